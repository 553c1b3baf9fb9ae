"""Decoder work caps (imagepipe.rendering.structure) and the render time budget.

The hostile files are built here, with Pillow and bytes; the probe's cost on
them is measured in bench/ (``python -m bench.costs decode-caps``), not here.
"""
import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imagepipe.errors import ImageTooComplex, TooManyPixels
from imagepipe.rendering.pool import RenderBudget
from imagepipe.rendering.probe import probe
from imagepipe.rendering.structure import (
    MAX_FRAMES, DecodeLimits, check_structure, gif_counts, jpeg_counts, png_counts)
from imagepipe.settings import Settings
from tests import corpus
from harness.hostile import (
    gif_of, make_progressive_jpeg, png_chunk, repeat_last_scan, with_jpeg_comments, with_png_chunks)
from tests.helpers import make_jpeg, make_png

SMALL = DecodeLimits(jpeg_max_scans=12, jpeg_max_segments=40, png_max_chunks=20, gif_max_blocks=50)


# -- JPEG -----------------------------------------------------------------

def test_a_scan_repeated_2500_times_is_refused_before_decoding():
    hostile = repeat_last_scan(make_progressive_jpeg(7000, 7000), 2500)
    assert len(hostile) < 500_000  # a 49 MP picture that costs ~80 s to decode
    with pytest.raises(ImageTooComplex, match="^JPEG has more than 100 scans; the limit is 100$") as caught:
        probe(hostile)
    assert (caught.value.code, caught.value.http_status) == ("image_too_complex", 413)
    assert isinstance(caught.value, TooManyPixels)  # the same 413 family


def test_scans_at_the_limit_pass_and_one_more_is_refused():
    progressive = make_progressive_jpeg(64, 64)
    base_scans = jpeg_counts(progressive)[1]
    assert base_scans == 10  # libjpeg's standard progression for YCbCr
    at_limit = repeat_last_scan(progressive, SMALL.jpeg_max_scans - base_scans)
    assert jpeg_counts(at_limit)[1] == SMALL.jpeg_max_scans
    assert probe(at_limit, limits=SMALL).width == 64
    with pytest.raises(ImageTooComplex, match="more than 12 scans"):
        probe(repeat_last_scan(at_limit, 1), limits=SMALL)


def test_millions_of_empty_jpeg_segments_are_refused_and_the_walk_stops_early():
    data = with_jpeg_comments(make_jpeg(64, 64), 1_000_000)
    with pytest.raises(ImageTooComplex, match="more than 2000 segments"):
        probe(data)
    assert jpeg_counts(data, max_segments=100)[0] == 101  # one past the limit, not a million


@pytest.mark.corpus  # reads real-world files of the corpus
def test_every_picture_of_an_mpo_counts():
    mpo = corpus.read("sugarshack.mpo")
    assert jpeg_counts(mpo)[1] == 2
    with pytest.raises(ImageTooComplex, match="more than 1 scans"):
        check_structure(mpo, DecodeLimits(jpeg_max_scans=1))


def test_fill_bytes_and_restart_markers_do_not_confuse_the_walk():
    image = Image.effect_noise((256, 256), 60).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, progressive=True, restart_marker_blocks=1)
    data = out.getvalue()
    assert b"\xff\xd0" in data
    filled = data.replace(b"\xff\xda", b"\xff\xff\xff\xda")  # fill bytes before each SOS
    assert jpeg_counts(data)[1] == jpeg_counts(filled)[1] == 10
    Image.open(io.BytesIO(filled)).load()  # still a JPEG Pillow decodes


# -- PNG ------------------------------------------------------------------

def test_png_chunks_are_capped():
    png = make_png(32, 32)
    assert png_counts(png) == (3, 0)  # IHDR, IDAT, IEND
    assert probe(with_png_chunks(png, png_chunk(b"teXt"), 17), limits=SMALL).width == 32  # 20 in all
    with pytest.raises(ImageTooComplex, match="^PNG has more than 20 chunks; the limit is 20$"):
        probe(with_png_chunks(png, png_chunk(b"teXt"), 18), limits=SMALL)
    many = with_png_chunks(png, png_chunk(b"teXt"), 2_000_000)  # 24 MB
    with pytest.raises(ImageTooComplex, match="more than 10000 chunks"):
        probe(many)
    assert png_counts(many, max_chunks=50)[0] == 51


def test_tiny_idat_chunks_count_too():
    image = Image.effect_noise((64, 64), 50)
    out = io.BytesIO()
    image.save(out, "PNG")
    data = out.getvalue()
    idat_at = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[idat_at:idat_at + 4])[0]
    compressed = data[idat_at + 8:idat_at + 8 + length]
    split = b"".join(png_chunk(b"IDAT", compressed[i:i + 1]) for i in range(len(compressed)))
    hostile = data[:idat_at] + split + data[idat_at + 12 + length:]
    assert Image.open(io.BytesIO(hostile)).tobytes() == image.tobytes()  # valid, just chopped
    with pytest.raises(ImageTooComplex, match="PNG has more than"):
        probe(hostile, limits=DecodeLimits(png_max_chunks=len(compressed)))


@pytest.mark.corpus  # reads real-world files of the corpus
def test_apng_frame_controls_are_held_to_the_frame_cap():
    apng = corpus.read("iss634.apng")
    assert png_counts(apng)[1] == 41 and probe(apng).frames > 1
    png = make_png(8, 8)
    fctl = png_chunk(b"fcTL", bytes(26))
    with pytest.raises(TooManyPixels, match=f"^image has more than {MAX_FRAMES} frames"):
        check_structure(with_png_chunks(png, fctl, MAX_FRAMES + 1))
    check_structure(with_png_chunks(png, fctl, MAX_FRAMES))


# -- GIF ------------------------------------------------------------------

def test_gif_blocks_are_capped():
    # per frame: comment, graphic control and its sub-block, image and its sub-block
    assert gif_counts(gif_of(2)) == (10, 2)
    assert gif_counts(gif_of(2, sub_blocks_per_comment=3)) == (16, 2)
    with pytest.raises(ImageTooComplex, match="^GIF has more than 50 blocks; the limit is 50$"):
        probe(gif_of(1, sub_blocks_per_comment=50), limits=SMALL)
    probe(gif_of(1, sub_blocks_per_comment=45), limits=SMALL)
    hostile = gif_of(1, sub_blocks_per_comment=12_000_000)  # 24 MB of 1-byte comment blocks
    with pytest.raises(ImageTooComplex, match="GIF has more than 200000 blocks"):
        probe(hostile)
    assert gif_counts(hostile, max_blocks=100)[0] == 101


def test_gif_frames_past_the_cap_are_refused_by_the_walk():
    with pytest.raises(TooManyPixels, match=f"^image has more than {MAX_FRAMES} frames"):
        check_structure(gif_of(MAX_FRAMES + 1))
    assert gif_counts(gif_of(1_000_000), max_images=MAX_FRAMES)[1] == MAX_FRAMES + 1
    check_structure(gif_of(MAX_FRAMES))


# -- what must still pass -----------------------------------------------------

@pytest.mark.corpus  # reads real-world files of the corpus
def test_every_valid_corpus_image_is_within_the_default_limits():
    valid = [row["file"] for row in corpus.manifest() if row["category"] == "valid"]
    assert len(valid) > 40
    for name in valid:
        check_structure(corpus.read(name))  # raises on a refusal


@pytest.mark.corpus  # reads real-world files of the corpus
@pytest.mark.parametrize("name", ["app13-multiple.jpg", "icc_profile_big.jpg"])
def test_progressive_corpus_jpegs_pass(name):
    data = corpus.read(name)
    assert jpeg_counts(data)[1] >= 10  # really progressive
    assert probe(data).format == "JPEG"


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a"]),
       body=st.binary(max_size=400))
def test_the_walks_survive_any_bytes(prefix, body):
    try:
        check_structure(prefix + body, SMALL)
    except TooManyPixels:
        pass  # a refusal is a fine answer; nothing else may come out


# -- settings and the render budget ----------------------------------------------

def test_limits_and_budget_come_from_config():
    settings = Settings.from_config({
        "JPEG_MAX_SCANS": "7", "PNG_MAX_CHUNKS": 9, "RENDER_SECONDS_PER_MEGAPIXEL": "0.1",
        "RENDER_SECONDS_MIN": "2", "RENDER_SANDBOX": "Require"})
    assert settings.decode_limits == DecodeLimits(
        jpeg_max_scans=7, jpeg_max_segments=2000, png_max_chunks=9, gif_max_blocks=200_000)
    assert (settings.render_seconds_per_megapixel, settings.render_seconds_min) == (0.1, 2.0)
    assert settings.render_sandbox == "require"
    assert Settings.from_config({}).decode_limits == DecodeLimits()
    for bad in ({"JPEG_MAX_SCANS": "0"}, {"RENDER_SECONDS_MIN": "-1"}, {"RENDER_SANDBOX": "maybe"}):
        with pytest.raises(ValueError):
            Settings.from_config(bad)


def test_the_budget_grows_with_pixels_between_floor_and_ceiling():
    budget = RenderBudget(ceiling=60, per_megapixel=0.25, floor=5)
    assert budget.seconds(1_000) == 5  # a tiny file gets the floor, not the ceiling
    assert budget.seconds(40_000_000) == 10
    assert budget.seconds(10_000_000_000) == 60
    assert budget.header_seconds() == 5
    assert RenderBudget(ceiling=0.05, per_megapixel=0.25, floor=5).seconds(10**9) == 0.05
    assert RenderBudget(ceiling=30).seconds(10**9) == RenderBudget(ceiling=30).header_seconds() == 30
