"""imagepipe's probe and render on every file of Pillow's real-world corpus
(tests/corpus.py), by the categories of its MANIFEST.tsv.  Marked ``corpus``:
run whenever the corpus is found (skipped with the reason otherwise; failed
without it under CI=true).  test_images.py runs its checks on images made
with Pillow and on the matching corpus files."""
import collections
import functools
import io
import time

import pytest
from PIL import Image

from imagepipe.errors import InvalidImage, TooManyPixels, UnsupportedFormat
from imagepipe.rendering.presets import DEFAULT_FORMATS, Preset
from imagepipe.rendering.probe import probe
from imagepipe.rendering.render import render
from tests.corpus import expected_format, manifest, read
from tests.helpers import mean_difference, render_one
from tests.helpers import decode_rendition as decode

# Pillow warns about corrupt EXIF and oversized tags in corpus files; noise here.
pytestmark = [pytest.mark.corpus, pytest.mark.filterwarnings("ignore::UserWarning:PIL")]

REJECTIONS = (InvalidImage, TooManyPixels, UnsupportedFormat)
THUMB = Preset("thumb", 256, 256)
MEDIUM = Preset("medium", 1024, 1024, quality=82)
DEFAULT_PRESETS = [THUMB, MEDIUM]


def row_for(name):
    return next(row for row in manifest() if row["file"] == name)


def test_corpus_icc_profile_on_rgba_png_keeps_alpha():
    data = read("icc_profile.png")
    out = decode(render_one(data, Preset("p", 64, 64, format="png")))
    assert out.mode == "RGBA" and out.info.get("icc_profile") is None
    assert mean_difference(out, Image.open(io.BytesIO(data)).convert("RGBA")) < 2


# -- the corpus ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def corpus_outcomes():
    """Probe, then render, every corpus file once; (row, outcome, error, info, renditions, s)."""
    results = []
    for row in manifest():
        data = read(row["file"])
        info = renditions = error = None
        start = time.perf_counter()
        try:
            info = probe(data)
            renditions = render(data, DEFAULT_PRESETS)
            outcome = "rendered"
        except REJECTIONS as exc:
            error, outcome = exc, ("render: " if info else "probe: ") + type(exc).__name__
        except Exception as exc:  # recorded, then reported by the tests below
            error, outcome = exc, "CRASH " + type(exc).__name__
        results.append((row, outcome, error, info, renditions, time.perf_counter() - start))
    return tuple(results)


def test_corpus_outcome_table(capsys):
    table = collections.defaultdict(collections.Counter)
    for row, outcome, *_ in corpus_outcomes():
        table[row["category"]][outcome] += 1
    with capsys.disabled():
        print("\ncorpus outcomes by category (probe, then render with thumb + medium):")
        for category in ("valid", "invalid", "bomb", "fuzz"):
            for outcome, count in sorted(table[category].items()):
                print("  {:8} {:34} {:3}".format(category, outcome, count))
    assert not [outcome for counts in table.values() for outcome in counts
                if outcome.startswith("CRASH")], table
    assert sum(sum(counts.values()) for counts in table.values()) == len(manifest())


def test_corpus_every_file_finishes_quickly():
    slow = [(row["file"], round(seconds, 2)) for row, _, _, _, _, seconds in corpus_outcomes()
            if seconds >= 10]
    assert slow == []


def test_corpus_valid_files_in_allowed_formats_probe_and_render():
    checked = 0
    for row, outcome, error, info, renditions, _ in corpus_outcomes():
        if row["category"] != "valid" or expected_format(row) not in DEFAULT_FORMATS:
            continue
        assert outcome == "rendered", (row["file"], outcome, error)
        source = Image.open(io.BytesIO(read(row["file"])))
        swapped = source.getexif().get(0x0112, 1) >= 5
        size = (int(row["width"]), int(row["height"]))
        assert (info.width, info.height) == (size[::-1] if swapped else size), row["file"]
        assert info.format == expected_format(row), row["file"]
        assert info.frames == int(row["frames"]), row["file"]
        for rendition, box in zip(renditions, (256, 1024)):
            out = decode(rendition)
            assert out.format == "WEBP" and out.size == (rendition.width, rendition.height)
            assert max(out.size) <= box
            assert out.width <= info.width and out.height <= info.height
        checked += 1
    assert checked >= 45


def test_corpus_valid_files_in_other_formats_are_unsupported():
    others = [(row["file"], outcome, str(error)) for row, outcome, error, *_ in corpus_outcomes()
              if row["category"] == "valid" and expected_format(row) not in DEFAULT_FORMATS]
    assert len(others) == 4  # PSD, QOI, JPEG 2000, ICO
    for name, outcome, message in others:
        assert outcome == "probe: UnsupportedFormat", (name, outcome)
        assert "allowed: JPEG, PNG, GIF, WEBP, TIFF, BMP, AVIF, HEIF" in message
    messages = " ".join(message for *_, message in others)
    for fmt in ("PSD", "QOI", "JPEG2000", "ICO"):
        assert "{} images are not accepted".format(fmt) in messages


@pytest.mark.parametrize("category", ["invalid", "bomb", "fuzz"])
def test_corpus_bad_files_are_rejected_cleanly(category):
    rows = [result for result in corpus_outcomes() if result[0]["category"] == category]
    assert rows
    for row, outcome, error, *_ in rows:
        if outcome == "rendered":
            # only fuzz reproducers that current Pillow decodes correctly may pass
            assert category == "fuzz" and row["pillow_outcome"] == "ok", row["file"]
            continue
        assert isinstance(error, REJECTIONS), (row["file"], outcome, error)
        message = str(error)
        assert message and "Traceback" not in message and "BytesIO" not in message
        assert "/work" not in message and "0x" not in message, message


def test_corpus_specific_verdicts():
    verdicts = {row["file"]: (outcome, error) for row, outcome, error, *_ in corpus_outcomes()}
    assert verdicts["postscript_eps_as.jpg"][0] == "probe: UnsupportedFormat"
    assert "EPS images are not accepted" in str(verdicts["postscript_eps_as.jpg"][1])
    assert verdicts["zero_byte.jpg"][0] == "probe: UnsupportedFormat"
    for name in ("decompression_bomb.gif", "bmp_b_reallybig.bmp"):
        assert verdicts[name][0] == "probe: TooManyPixels", name
    # frame 1's extents explode only on seek: render's later-frame check sees it
    assert verdicts["decompression_bomb_extents.gif"][0] == "render: TooManyPixels"
    for name in ("truncated_jpeg.jpg", "truncated_image.png", "ultrahdr.jpg",
                 "truncated_half_iss634.gif", "sugarshack_no_data.mpo"):
        assert verdicts[name][0] == "render: InvalidImage", name
    assert verdicts["sugarshack.mpo"][0] == "rendered"
    info = probe(read("sugarshack.mpo"))
    assert (info.format, info.mime_type, info.frames) == ("JPEG", "image/jpeg", 2)
    assert row_for("sugarshack.mpo")["format_expected"] == "MPO"
