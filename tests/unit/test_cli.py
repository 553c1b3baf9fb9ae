"""The CLI's pure parts: the server-sent events parser, the folder walk, the operator loops."""
import io
import sys

import pytest

from imagepipe.cli import CliError, collect_files, main, parse_events, prune_all, reprocess_all


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


class FakeStorage:
    """Storage's reprocess and prune RPCs as a queue with room for ``room`` jobs per step."""

    def __init__(self, images, room):
        self.images, self.room, self.steps = list(images), room, []
        self.pruned = 0

    def reprocess_plan(self, every):
        return {"images": len(self.images), "presets": ["thumb"]}

    def reprocess_batch(self, cursor, every, max_waiting):
        start = 0 if cursor is None else self.images.index(cursor) + 1
        room = self.room.pop(0) if self.room else max_waiting
        batch = self.images[start:start + room]
        self.steps.append((cursor, len(batch)))
        return {"enqueued": len(batch), "cursor": batch[-1] if batch else cursor,
                "finished": len(batch) < room and room > 0, "waiting": 0}

    def stale_renditions(self):
        left = 3 - self.pruned
        return {"old": {"renditions": left, "bytes": 100 * left}} if left else {}

    def prune_renditions(self):
        batch = min(2, 3 - self.pruned)  # two per call
        self.pruned += batch
        return {"pruned": batch, "remaining": 3 - self.pruned}


def test_reprocess_all_waits_while_the_queue_is_full_and_resumes_at_its_cursor():
    storage = FakeStorage(["a", "b", "c", "d", "e"], room=[2, 0, 0, 2])
    pauses = []
    enqueued = reprocess_all(storage, max_waiting=2, quiet=True, pause=0.5, sleep=pauses.append)
    assert enqueued == 5
    assert storage.steps == [(None, 2), ("b", 0), ("b", 0), ("b", 2), ("d", 1)]
    assert pauses == [0.5, 0.5]  # only when nothing could be enqueued


def test_prune_all_lists_and_only_deletes_when_asked():
    out = io.StringIO()
    storage = FakeStorage([], room=[])
    assert prune_all(storage, delete=False, out=out, quiet=True) == {
        "old": {"renditions": 3, "bytes": 300}}
    assert storage.pruned == 0 and out.getvalue() == "old: 3 renditions, 300 bytes\n"
    prune_all(storage, delete=True, out=out, quiet=True)
    assert storage.pruned == 3 and out.getvalue().endswith("deleted 3 renditions\n")


def test_operator_commands_without_the_services_say_where_to_run_them(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "services.operator", None)  # a `pip install .` client
    config = tmp_path / "config.yaml"
    config.write_text("AMQP_URI: amqp://nowhere/\n")
    err = io.StringIO()
    assert main(["reprocess", "--config", str(config)], out=io.StringIO(), err=err) == 1
    assert "docker compose exec storage python -m imagepipe reprocess" in err.getvalue()


def test_scale_is_a_subcommand_with_its_own_options():
    from imagepipe.cli import build_parser, scale_command

    args = build_parser().parse_args(["scale", "--config", "other.yaml"])
    assert args.run is scale_command and args.config == "other.yaml"
    assert "url" not in args  # not a client of the gateway
    assert build_parser().parse_args(["scale"]).config == "config.yaml"
