"""Images of every mode the presets must handle, end to end over HTTP.

Made with Pillow (tests/samples.py), so this runs from a bare clone; the
same checks on real-world files are in test_corpus_modes.py (marker ``corpus``).
"""
from PIL import Image, ImageStat

from tests import samples
from tests.helpers import decode, mean_difference, upload, upright, wait_for_status
from tests.samples import encode, picture, with_orientation


def upload_and_wait(web, data, name):
    status = wait_for_status(web, upload(web, data, name))
    assert status["status"] == "done", (name, status)
    return status


def download(web, status, preset):
    response = web.get(status["variants"][preset]["url"])
    assert response.status_code == 200
    return decode(response.content)


def test_exif_orientation_is_applied(pipeline, web):
    source = picture((320, 200))
    for orientation in range(2, 9):
        data = with_orientation(source, orientation)
        thumb = download(web, upload_and_wait(web, data, "o{}.jpg".format(orientation)), "thumb")
        reference = upright(data).resize(thumb.size, Image.Resampling.LANCZOS)
        unrotated = decode(data).convert("RGB").resize(thumb.size)
        assert mean_difference(thumb, reference) < 8, orientation
        # the check would notice a missing rotation: the stored pixels differ a lot
        assert mean_difference(thumb, unrotated) > 2 * mean_difference(thumb, reference), orientation
        assert "exif" not in thumb.info and not thumb.getexif()


def test_rectangle_orientation_swaps_dimensions(pipeline, web):
    data = with_orientation(Image.new("RGB", (2, 1), "red"), 8)  # stored 2x1, shown 1x2
    status = upload_and_wait(web, data, "rectangle.jpg")
    assert (status["original"]["width"], status["original"]["height"]) == (1, 2)
    assert download(web, status, "thumb").size == (1, 2)


def wide_gamut_jpeg():
    profile = samples.wide_gamut_profile(padding=300_000)  # split over several APP2 segments
    return encode(samples.to_profile(samples.saturated((600, 400)), profile), "JPEG",
                  quality=92, icc_profile=profile)


# name: (how to make it, the mode its WebP renditions must have)
MODES = {
    "cmyk.tif": (samples.cmyk_tiff, "RGB"),
    "palette-transparent.png": (samples.palette_with_transparency, "RGBA"),
    "transparent.png": (lambda: encode(samples.transparent_rgba((300, 200)), "PNG"), "RGBA"),
    "gray.jpg": (samples.gray_jpeg, "RGB"),  # WebP has no gray mode
    "lab.tif": (samples.lab_tiff, "RGB"),
    "wide-gamut.jpg": (wide_gamut_jpeg, "RGB"),  # ICC profile converted to sRGB
    # animations render their first frame, which is opaque here
    # (libwebp stores an all-opaque alpha channel as no alpha)
    "animation.gif": (lambda: samples.animation("GIF", (300, 200)), "RGB"),
    "animation.webp": (lambda: samples.animation("WEBP", (300, 200)), "RGB"),
    "animation.apng": (lambda: samples.animation("PNG", (300, 200)), "RGB"),
    "g4-multipage.tif": (samples.bilevel_multipage_tiff, "RGB"),  # bilevel, multi-page
}


def test_modes_render_to_sane_webp(pipeline, web):
    for name, (make, expected_mode) in MODES.items():
        data = make()
        status = upload_and_wait(web, data, name)
        source = decode(data)
        for preset, box in (("thumb", 256), ("medium", 1024)):
            image = download(web, status, preset)
            assert image.format == "WEBP", name
            assert image.mode == expected_mode, (name, preset, image.mode)
            assert max(image.size) <= box, name
            assert image.size[0] <= source.size[0] and image.size[1] <= source.size[1], name
            assert image.info.get("icc_profile") in (None, b""), name
            low, high = ImageStat.Stat(image.convert("L")).extrema[0]
            assert high - low > 16, "rendition of {} is flat".format(name)


def test_16bit_is_scaled_not_clipped_and_transparency_survives(pipeline, web):
    # values 291..694 of 65535: scaled correctly it stays dark; clipped
    # (Pillow's plain convert) it turns white
    data = samples.dark_16bit_tiff((300, 200))
    thumb = download(web, upload_and_wait(web, data, "16bit.tif"), "thumb").convert("L")
    source = decode(data)
    assert source.mode == "I;16"
    expected = source.convert("I").point(lambda value: value / 256).convert("L")
    assert mean_difference(thumb, expected.resize(thumb.size)) < 2
    assert ImageStat.Stat(thumb).mean[0] < 10

    transparent = samples.transparent_rgba((300, 200))
    thumb = download(web, upload_and_wait(web, encode(transparent, "PNG"), "alpha.png"), "thumb")
    assert thumb.getchannel("A").getextrema() == transparent.getchannel("A").getextrema()
