"""Property tests: whatever the bytes, sniffing and rendering fail cleanly.

Inputs are random bytes and mutations (bit flips, truncations, spliced
headers) of small real images of every allowed format.  The only acceptable
failures are the three documented rejections; anything else would be a 500
at the gateway or a crashed job in imaging.
"""
import io

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from imagepipe.rendering.presets import Preset
from imagepipe.rendering.probe import probe
from imagepipe.rendering.render import render
from imagepipe.errors import InvalidImage, TooManyPixels, UnsupportedFormat

REJECTIONS = (InvalidImage, TooManyPixels, UnsupportedFormat)
PRESETS = [Preset("thumb", 64, 64), Preset("cover", 40, 20, fit="cover", format="jpeg")]


def seed_images():
    seeds = []
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("WEBP", "RGB"),
                      ("TIFF", "RGB"), ("BMP", "RGB"), ("AVIF", "RGB"), ("PNG", "I;16")):
        image = Image.linear_gradient("L").resize((48, 32)).convert(mode)
        out = io.BytesIO()
        image.save(out, fmt)
        seeds.append(out.getvalue())
    return seeds


SEEDS = seed_images()


def sliver_gif_body(size):
    """A valid GIF of ``size`` after its 6-byte magic."""
    out = io.BytesIO()
    Image.new("P", size).save(out, "GIF")
    return out.getvalue()[6:]


SLIVERS = [sliver_gif_body((1, 200)), sliver_gif_body((200, 1))]


@st.composite
def mutated_images(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        data += draw(st.binary(max_size=64))
    return bytes(data)


def check(data):
    try:
        info = probe(data)
    except REJECTIONS:
        return
    assert info.width > 0 and info.height > 0 and info.frames >= 1
    try:
        renditions = render(data, PRESETS)
    except REJECTIONS:
        return
    for rendition in renditions:
        decoded = Image.open(io.BytesIO(rendition.data))
        decoded.load()
        assert decoded.size == (rendition.width, rendition.height)


FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated_images())
def test_mutated_images_fail_cleanly(data):
    check(data)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_fail_cleanly(data):
    check(data)


@FUZZ
@given(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"II*\x00", b"BM",
                        b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x00\x00\x00\x1cftypavif"]),
       st.binary(max_size=256))
@example(b"GIF89a", SLIVERS[0])  # once crashed the smart crop: a saliency map all border
@example(b"GIF89a", SLIVERS[1])
def test_valid_magic_with_garbage_fails_cleanly(magic, rest):
    check(magic + rest)


@pytest.mark.parametrize("data", SEEDS)
def test_seeds_themselves_render(data):
    assert len(render(data, PRESETS)) == 2
