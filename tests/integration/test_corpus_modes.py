"""Real images of every mode the presets must handle, end to end over HTTP.

Files from Pillow's real-world corpus (marker ``corpus``); test_modes.py runs
the same checks on images made with Pillow.
"""
import io

import pytest
from PIL import Image, ImageOps, ImageStat

from tests.corpus import read
from tests.helpers import mean_difference, wait_for_status

pytestmark = pytest.mark.corpus


def upload_and_wait(web, name):
    response = web.post("/upload", files={"image": (name, read(name))})
    assert response.status_code == 202, response.text
    status = wait_for_status(web, response.json()["id"])
    assert status["status"] == "done", status
    return status


def download(web, status, preset):
    response = web.get(status["variants"][preset]["url"])
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def upright_reference(name, size):
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(read(name)))).convert("RGB")
    return reference.resize(size, Image.Resampling.LANCZOS)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied(pipeline, web, orientation):
    name = "hopper_orientation_{}.jpg".format(orientation)
    if orientation == 5:
        name = "hopper_orientation_6.webp"  # the corpus has no 5; WebP EXIF instead
    status = upload_and_wait(web, name)
    thumb = download(web, status, "thumb")
    reference = upright_reference(name, thumb.size)
    unrotated = Image.open(io.BytesIO(read(name))).convert("RGB").resize(thumb.size)
    assert mean_difference(thumb, reference) < 8
    # the check would notice a missing rotation: the stored pixels differ a lot
    assert mean_difference(thumb, unrotated) > 2 * mean_difference(thumb, reference)
    assert "exif" not in thumb.info and not thumb.getexif()


def test_rectangle_orientation_swaps_dimensions(pipeline, web):
    status = upload_and_wait(web, "orientation_rectangle.jpg")  # stored 2x1, shown 1x2
    assert (status["original"]["width"], status["original"]["height"]) == (1, 2)
    assert download(web, status, "thumb").size == (1, 2)


@pytest.mark.parametrize("name, expected_mode", [
    ("tiff_strip_cmyk_jpeg.tif", "RGB"),     # CMYK
    ("pil123p.png", "RGBA"),                 # palette with transparency
    ("transparent.png", "RGBA"),
    ("hopper_gray.jpg", "RGB"),              # grayscale (WebP has no gray mode)
    ("hopper.Lab.tif", "RGB"),
    ("icc_profile_big.jpg", "RGB"),          # ICC profile converted to sRGB
    # animations render their first frame, which is opaque in these files
    # (libwebp stores an all-opaque alpha channel as no alpha)
    ("iss634.gif", "RGB"),
    ("iss634.webp", "RGB"),
    ("iss634.apng", "RGB"),
    ("g4-multi.tiff", "RGB"),                # bilevel, multi-page
])
def test_modes_render_to_sane_webp(pipeline, web, name, expected_mode):
    status = upload_and_wait(web, name)
    source = Image.open(io.BytesIO(read(name)))
    for preset, box in (("thumb", 256), ("medium", 1024)):
        image = download(web, status, preset)
        assert image.format == "WEBP"
        assert image.mode == expected_mode
        assert max(image.size) <= box
        assert image.size[0] <= source.size[0] and image.size[1] <= source.size[1]
        assert image.info.get("icc_profile") in (None, b"")
        low, high = ImageStat.Stat(image.convert("L")).extrema[0]
        assert high - low > 16, "rendition of {} is flat".format(name)


def test_16bit_is_scaled_not_clipped(pipeline, web):
    # This 16-bit TIFF holds values 291..694 of 65535: a dark image.  Scaled
    # correctly it stays dark; clipped (Pillow's plain convert) it turns white.
    name = "16bit.cropped.tif"
    status = upload_and_wait(web, name)
    thumb = download(web, status, "thumb").convert("L")
    source = Image.open(io.BytesIO(read(name)))
    assert source.mode == "I;16"
    expected = source.convert("I").point(lambda value: value / 256).convert("L")
    assert mean_difference(thumb, expected.resize(thumb.size)) < 2
    assert ImageStat.Stat(thumb).mean[0] < 10


def test_transparency_survives(pipeline, web):
    status = upload_and_wait(web, "transparent.png")
    thumb = download(web, status, "thumb")
    source = Image.open(io.BytesIO(read("transparent.png"))).convert("RGBA")
    assert thumb.getchannel("A").getextrema() == source.getchannel("A").getextrema()
