"""imagepipe.rendering.strip: what stored originals keep, checked by decoding them with Pillow."""
import io

import pytest
from PIL import Image, ImageChops
from PIL.PngImagePlugin import PngInfo

from imagepipe.rendering.probe import apply_pillow_policy, probe_with_orientation
from imagepipe.rendering.strip import stored_form
from tests import samples

GPS_IFD = 0x8825
MAKE, ARTIST, ORIENTATION = 0x010F, 0x013B, 0x0112


def personal_exif(orientation=6):
    exif = Image.Exif()
    exif[MAKE] = "PhoneMaker"
    exif[ARTIST] = "someone@example.org"
    exif[ORIENTATION] = orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    return exif


def stored(data):
    info, orientation = probe_with_orientation(data)
    return stored_form(data, info.format, orientation)


def same_pixels(a, b):
    first, second = Image.open(io.BytesIO(a)), Image.open(io.BytesIO(b))
    return ImageChops.difference(first.convert("RGBA"), second.convert("RGBA")).getbbox() is None


def test_jpeg_loses_gps_camera_comment_and_trailing_bytes_but_not_pixels_or_orientation():
    image, profile = samples.picture(), samples.wide_gamut_profile()
    out = io.BytesIO()
    image.save(out, "JPEG", exif=personal_exif(6), comment=b"mail me: someone@example.org",
               icc_profile=profile)
    uploaded = out.getvalue() + b"TRAILING FREE HOSTING" * 100
    kept = stored(uploaded)
    assert b"someone@example.org" not in kept and b"PhoneMaker" not in kept
    assert not kept.endswith(b"HOSTING") and kept.endswith(b"\xff\xd9")
    decoded = Image.open(io.BytesIO(kept))
    exif = decoded.getexif()
    assert dict(exif) == {ORIENTATION: 6} and not exif.get_ifd(GPS_IFD)
    assert decoded.info.get("icc_profile") == profile  # colour is kept
    assert same_pixels(kept, out.getvalue())  # the compressed data is untouched


def test_progressive_jpeg_with_many_scans_keeps_every_scan():
    out = io.BytesIO()
    samples.picture((300, 200)).save(out, "JPEG", progressive=True, exif=personal_exif(1))
    kept = stored(out.getvalue())
    assert b"PhoneMaker" not in kept and ORIENTATION not in Image.open(io.BytesIO(kept)).getexif()
    assert same_pixels(kept, out.getvalue())
    assert kept.count(b"\xff\xda") == out.getvalue().count(b"\xff\xda")


def test_png_loses_text_and_trailing_bytes_keeps_transparency_and_colour():
    image = samples.transparent_rgba()
    info = PngInfo()
    info.add_text("Author", "someone@example.org")
    info.add_itxt("Description", "taken at home", zip=True)
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info, exif=personal_exif(3))
    uploaded = out.getvalue() + b"\x00" * 5000
    kept = stored(uploaded)
    assert b"someone@example.org" not in kept and b"taken at home" not in kept
    assert kept.endswith(b"IEND\xaeB`\x82")
    decoded = Image.open(io.BytesIO(kept))
    assert decoded.getexif().get(ORIENTATION) == 3 and MAKE not in decoded.getexif()
    assert same_pixels(kept, out.getvalue())


def test_webp_loses_exif_and_xmp_but_keeps_orientation_and_pixels():
    out = io.BytesIO()
    samples.picture().save(out, "WEBP", lossless=True, exif=personal_exif(8),
                           xmp=b"<x:xmpmeta>someone@example.org</x:xmpmeta>")
    kept = stored(out.getvalue() + b"junk" * 10)
    assert b"someone@example.org" not in kept and b"PhoneMaker" not in kept
    decoded = Image.open(io.BytesIO(kept))
    assert dict(decoded.getexif()) == {ORIENTATION: 8}
    assert same_pixels(kept, out.getvalue())


def test_animated_gif_keeps_frames_timing_and_loop_not_comments():
    out = io.BytesIO()
    frames = samples.frames(count=3)
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=[70, 80, 90],
                   loop=2, comment=b"someone@example.org")
    kept = stored(out.getvalue() + b"after the trailer")
    assert b"someone@example.org" not in kept and kept.endswith(b"\x3b")
    decoded = Image.open(io.BytesIO(kept))
    assert decoded.n_frames == 3 and decoded.info["loop"] == 2
    durations = []
    for index in range(3):
        decoded.seek(index)
        durations.append(decoded.info["duration"])
    assert durations == [70, 80, 90]


def test_bmp_loses_trailing_bytes():
    out = io.BytesIO()
    samples.picture().save(out, "BMP")
    assert stored(out.getvalue() + b"x" * 999) == out.getvalue()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_lose_exif_and_xmp_in_place(fmt):
    apply_pillow_policy()  # registers pillow-heif's HEIF plugin
    out = io.BytesIO()
    samples.picture().save(out, fmt, exif=personal_exif(1).tobytes(),
                           xmp=b"<x:xmpmeta>someone@example.org</x:xmpmeta>")
    kept = stored(out.getvalue())
    assert b"PhoneMaker" not in kept and b"someone@example.org" not in kept
    assert len(kept) == len(out.getvalue())  # blanked in place: no offset moved
    decoded = Image.open(io.BytesIO(kept))
    assert MAKE not in decoded.getexif() and not decoded.getexif().get_ifd(GPS_IFD)
    assert same_pixels(kept, out.getvalue())


def test_tiff_is_stored_as_uploaded():
    out = io.BytesIO()
    samples.picture().save(out, "TIFF")
    assert stored(out.getvalue()) == out.getvalue()


def test_a_structure_the_parser_cannot_follow_is_stored_as_uploaded():
    out = io.BytesIO()
    samples.picture().save(out, "JPEG", exif=personal_exif(1))
    broken = bytearray(out.getvalue())
    broken[4:6] = b"\xff\xff"  # the first segment's length now runs past the end
    assert stored_form(bytes(broken), "JPEG", 1) == bytes(broken)


def test_nothing_to_strip_keeps_the_very_same_bytes():
    out = io.BytesIO()
    samples.picture().save(out, "PNG")
    assert stored(out.getvalue()) is not None and stored(out.getvalue()) == out.getvalue()
