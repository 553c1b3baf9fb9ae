"""The CLI's pure parts: the server-sent events parser and the folder walk."""
import pytest

from imagepipe.cli import CliError, collect_files, parse_events


def test_events_are_split_at_blank_lines():
    lines = [
        ": keep-alive", "",
        "event: status", 'data: {"status":"pending"}', "",
        "event: status", "data:{\"status\":\"done\"}", "",
        "data: first", "data: second", "",   # default name, joined data
        "event: ignored-without-data", "",
    ]
    assert list(parse_events(lines)) == [
        ("status", '{"status":"pending"}'),
        ("status", '{"status":"done"}'),
        ("message", "first\nsecond"),
    ]


def test_an_unfinished_event_at_the_end_of_the_stream_is_dropped():
    assert list(parse_events(["event: status", "data: {}"])) == []


def test_folders_are_walked_for_image_extensions(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/x.JPG", "a/b/y.webp", "a/b/z.txt", "a/w.tiff"]:
        (tmp_path / name).write_bytes(b"...")
    named = tmp_path / "named.dat"
    named.write_bytes(b"...")
    files, skipped = collect_files([str(tmp_path / "a"), str(named)])
    assert files == [tmp_path / "a/b/y.webp", tmp_path / "a/w.tiff", tmp_path / "a/x.JPG", named]
    assert skipped == 1


def test_a_missing_path_is_an_error(tmp_path):
    with pytest.raises(CliError, match="no such file"):
        collect_files([str(tmp_path / "nope")])


def test_scale_is_a_subcommand_with_its_own_options():
    from imagepipe.cli import build_parser, scale_command

    args = build_parser().parse_args(["scale", "--config", "other.yaml"])
    assert args.run is scale_command and args.config == "other.yaml"
    assert "url" not in args  # not a client of the gateway
    assert build_parser().parse_args(["scale"]).config == "config.yaml"
