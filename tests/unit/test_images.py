"""Probe and render with real Pillow on images made here (tests/samples.py):
every orientation, colour mode, ICC profile, animation, truncation and header
bomb the pipeline must handle.

Most checks also run on the matching files of Pillow's real-world corpus
(parameters marked ``corpus``, ids named after the file: run whenever the
corpus is found); test_images_corpus.py runs every file of it."""
import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import GifImagePlugin, Image, ImageChops, ImageCms, ImageFile, ImageOps, ImageStat, JpegImagePlugin

from imagepipe.errors import InvalidImage, TooManyPixels, UnsupportedFormat
from imagepipe.rendering.presets import DEFAULT_FORMATS, OUTPUT_FORMATS, Preset
from imagepipe.rendering.probe import ImageInfo, probe
from imagepipe.rendering.render import Rendition, render
from tests import samples
from tests.corpus import manifest, read
from tests.helpers import decode_rendition as decode
from tests.helpers import forbid_decoding, mean_difference, upright
from tests.helpers import render_one as render_preset
from tests.samples import encode, picture, with_orientation

# Pillow warns about corrupt EXIF and oversized tags in corpus files; noise here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

THUMB = Preset("thumb", 256, 256)
MEDIUM = Preset("medium", 1024, 1024, quality=82)
DEFAULT_PRESETS = [THUMB, MEDIUM]


def render_one(data, preset=THUMB, **kwargs):
    return render_preset(data, preset, **kwargs)


def made(make, label="made"):
    """A parameter: data made with Pillow by ``make()``."""
    return pytest.param(make, id=label)


def from_corpus(*names):
    """A parameter: the corpus file ``name`` (several: a list of their contents)."""
    def load():
        return read(names[0]) if len(names) == 1 else [read(name) for name in names]

    return pytest.param(load, id="+".join(names), marks=pytest.mark.corpus)


# -- Preset ---------------------------------------------------------------------

def test_preset_from_config_reads_every_field():
    preset = Preset.from_config("hero_2x", {"width": 1600, "height": 900, "fit": "Cover",
                                            "format": "JPEG", "quality": 90})
    assert preset == Preset("hero_2x", 1600, 900, "cover", "jpeg", 90)
    assert preset.mime_type == "image/jpeg"


def test_preset_defaults():
    preset = Preset.from_config("thumb", {"width": 256, "height": 256})
    assert (preset.fit, preset.format, preset.quality) == ("contain", "webp", 80)
    assert preset.mime_type == "image/webp"
    assert [Preset("p", 1, 1, format=f).mime_type for f in OUTPUT_FORMATS] == [
        "image/webp", "image/jpeg", "image/png", "image/avif"]


@pytest.mark.parametrize("name, mapping, message", [
    ("Thumb", {"width": 1, "height": 1}, "invalid"),
    ("", {"width": 1, "height": 1}, "invalid"),
    ("-thumb", {"width": 1, "height": 1}, "invalid"),
    ("thumb\n", {"width": 1, "height": 1}, "invalid"),
    ("a/b", {"width": 1, "height": 1}, "invalid"),
    ("x" * 33, {"width": 1, "height": 1}, "invalid"),
    (7, {"width": 1, "height": 1}, "invalid"),
    ("original", {"width": 1, "height": 1}, "reserved"),
    ("events", {"width": 1, "height": 1}, "reserved"),
    ("thumb", {"width": 0, "height": 1}, "width must be an integer from 1 to 10000"),
    ("thumb", {"width": 10001, "height": 1}, "width"),
    ("thumb", {"width": -5, "height": 1}, "width"),
    ("thumb", {"width": "256", "height": 1}, "width"),
    ("thumb", {"width": 25.5, "height": 1}, "width"),
    ("thumb", {"width": True, "height": 1}, "width"),
    ("thumb", {"width": 1, "height": 0}, "height"),
    ("thumb", {"width": 1}, "missing height"),
    ("thumb", {"width": 1, "heigth": 2}, "unknown keys heigth"),
    ("thumb", {"width": 1, "height": 1, "fit": "fill"}, "fit must be one of contain, cover"),
    ("thumb", {"width": 1, "height": 1, "format": "gif"}, "format must be one of"),
    ("thumb", {"width": 1, "height": 1, "format": None}, "format"),
    ("thumb", {"width": 1, "height": 1, "quality": 0}, "quality must be an integer from 1 to 100"),
    ("thumb", {"width": 1, "height": 1, "quality": 101}, "quality"),
    ("thumb", [("width", 1)], "expected a mapping"),
])
def test_preset_from_config_rejects(name, mapping, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Preset.from_config(name, mapping)


def test_preset_validates_direct_construction_too():
    with pytest.raises(ValueError):
        Preset("thumb", 0, 10)
    assert Preset("x" * 32, 10000, 1).width == 10000


# -- probe ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, mime", [
    ("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"), ("WEBP", "image/webp"),
    ("TIFF", "image/tiff"), ("BMP", "image/bmp"), ("AVIF", "image/avif"),
])
def test_probe_reports_format_size_and_mime(fmt, mime):
    assert probe(encode(picture((40, 30)), fmt)) == ImageInfo(fmt, mime, 40, 30, 1)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_probe_counts_animation_frames(fmt):
    frames = [Image.new("RGB", (30, 20), color) for color in ("red", "green", "blue")]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    assert probe(data).frames == 3


def test_probe_rejects_empty_and_unknown_data():
    with pytest.raises(UnsupportedFormat, match="empty"):
        probe(b"")
    with pytest.raises(UnsupportedFormat, match="unrecognised image format; allowed: JPEG, PNG"):
        probe(b"hello, this is not an image at all")


def test_probe_names_a_format_outside_the_allowlist():
    data = encode(picture(), "PNG")
    with pytest.raises(UnsupportedFormat, match="PNG images are not accepted; allowed: JPEG$"):
        probe(data, formats=("JPEG",))
    assert probe(data, formats=("png",)).format == "PNG"  # names are case-insensitive


def test_probe_rejects_an_unknown_format_name():
    with pytest.raises(ValueError, match="HEIC"):
        probe(encode(picture(), "PNG"), formats=("PNG", "HEIC"))


def test_corrupt_header_of_an_allowed_format_is_invalid_not_unsupported():
    data = encode(picture(), "PNG")
    broken = data[:12] + b"JUNK" + data[16:]  # the IHDR chunk type
    with pytest.raises(InvalidImage, match="looks like PNG"):
        probe(broken)


def test_probe_enforces_the_pixel_limit():
    data = encode(Image.new("L", (2000, 1000)), "PNG")
    assert probe(data, max_pixels=2_000_000).width == 2000
    with pytest.raises(TooManyPixels, match=r"^image has 2\.0 megapixels; the limit is 1\.0$"):
        probe(data, max_pixels=1_000_000)
    with pytest.raises(TooManyPixels):
        render(data, [THUMB], max_pixels=1_000_000)


def test_probe_counts_every_frame_against_the_pixel_limit():
    frames = [Image.new("L", (600, 600), shade) for shade in (0, 100, 200)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert probe(data, max_pixels=1_100_000).frames == 3
    with pytest.raises(TooManyPixels, match=r"1\.1 megapixels across 3 frames"):
        probe(data, max_pixels=1_000_000)


def tiny_gif(frames):
    """A GIF of ``frames`` 1x1 frames, 23 bytes each."""
    header = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = (b"\x21\xf9\x04\x00\x01\x00\x00\x00"            # graphic control extension
             b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"    # image descriptor, 1x1
             b"\x02\x02\x44\x01\x00")                          # LZW data
    return header + frame * frames + b"\x3b"


def test_frame_count_is_capped_and_counting_stays_cheap(monkeypatch):
    assert probe(tiny_gif(1000)).frames == 1000
    assert len(render(tiny_gif(1000), [THUMB])) == 1
    data = tiny_gif(1_000_000)  # 23 MB, only 1 MP: Pillow's n_frames walks it all (~5 s)
    visited = []
    seek = GifImagePlugin.GifImageFile._seek

    def counting_seek(self, frame, *args, **kwargs):
        visited.append(frame)
        return seek(self, frame, *args, **kwargs)

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", counting_seek)
    with pytest.raises(TooManyPixels, match="^image has more than 1000 frames; the limit is 1000"):
        probe(data)
    # refused by the structure walk, or Pillow's count stops one frame past the
    # limit: never a walk of a million frames
    assert len(visited) <= 1001, len(visited)


def test_tiff_page_count_is_capped():
    pages = [Image.new("L", (2, 2), shade % 256) for shade in range(1001)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(TooManyPixels, match="more than 1000 frames"):
        probe(data)
    assert probe(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:5])).frames == 5


@pytest.mark.parametrize("orientation", range(1, 9))
def test_probe_reports_displayed_dimensions(orientation):
    info = probe(with_orientation(picture((160, 100)), orientation))
    expected = (100, 160) if orientation >= 5 else (160, 100)
    assert (info.width, info.height) == expected


def every_kind_of_file():
    frames = [picture((50, 40)), Image.new("RGB", (50, 40), "blue")]
    inputs = [encode(picture(), fmt) for fmt in DEFAULT_FORMATS]
    inputs += [encode(frames[0], fmt, save_all=True, append_images=frames[1:])
               for fmt in ("GIF", "PNG", "WEBP", "TIFF", "AVIF")]
    return inputs + [
        with_orientation(picture(), 6), with_orientation(picture(), 8, "WEBP"),
        samples.cmyk_tiff(), samples.dark_16bit_tiff(), samples.lab_tiff(),
        samples.bilevel_multipage_tiff(), samples.palette_with_transparency(),
        samples.palette_bmp(), samples.rgba_bitfields_bmp(), samples.mpo(),
        encode(picture(), "JPEG", icc_profile=samples.wide_gamut_profile(100_000))]


def valid_corpus_files():
    return [read(row["file"]) for row in manifest()
            if row["category"] == "valid" and row["format_expected"] in DEFAULT_FORMATS + ("MPO",)]


@pytest.mark.parametrize("make", [
    made(every_kind_of_file),
    pytest.param(valid_corpus_files, id="valid-corpus-files", marks=pytest.mark.corpus),
])
def test_probe_never_decodes_pixels(monkeypatch, make):
    # (what probing costs next to rendering is measured by `make bench`: bench/costs.py)
    inputs = make()
    forbid_decoding(monkeypatch)
    with pytest.raises(AssertionError, match="decoded"):  # the trap works
        Image.open(io.BytesIO(inputs[0])).load()
    for data in inputs:
        assert probe(data).width > 0


# -- render: geometry -----------------------------------------------------------------

@pytest.mark.parametrize("preset, size", [
    (Preset("c", 100, 100), (100, 50)),
    (Preset("c", 100, 100, fit="cover"), (100, 100)),
    (Preset("c", 50, 80, fit="cover"), (50, 80)),
    (Preset("c", 300, 20), (40, 20)),
    (Preset("c", 300, 20, fit="cover"), (300, 20)),
    (Preset("c", 1000, 1000), (400, 200)),              # contain never upscales
    (Preset("c", 1000, 1000, fit="cover"), (200, 200)),  # cover: box aspect, source size
    (Preset("c", 800, 100, fit="cover"), (400, 50)),
])
def test_fit_dimensions(preset, size):
    rendition = render_one(encode(picture((400, 200)), "PNG"), preset)
    assert (rendition.width, rendition.height) == size
    assert decode(rendition).size == size


def test_cover_crops_the_centre():
    image = Image.new("RGB", (300, 100), "blue")
    image.paste((255, 0, 0), (100, 0, 200, 100))  # red centre square
    rendition = render_one(encode(image, "PNG"), Preset("sq", 50, 50, fit="cover", format="png"))
    red = Image.new("RGB", (50, 50), (255, 0, 0))
    assert mean_difference(decode(rendition), red) < 1


@pytest.mark.parametrize("make", [
    made(lambda: encode(picture((128, 128)), "JPEG", quality=90)), from_corpus("hopper.jpg")])
def test_small_image_is_not_upscaled(make):
    data = make()  # 128x128
    rendition = render_one(data, THUMB)
    assert (rendition.width, rendition.height) == (128, 128)
    assert mean_difference(decode(rendition), upright(data)) < 6
    cover = render_one(data, Preset("banner", 256, 128, fit="cover"))
    assert (cover.width, cover.height) == (128, 64)


def test_renditions_come_back_in_the_given_order():
    presets = [Preset("small", 32, 32), Preset("large", 300, 300, format="png"),
               Preset("mid", 100, 60, fit="cover", format="jpeg")]
    renditions = render(encode(picture((600, 400)), "JPEG"), presets)
    assert [r.preset for r in renditions] == ["small", "large", "mid"]
    assert [(r.width, r.height) for r in renditions] == [(32, 21), (300, 200), (100, 60)]
    assert [r.format for r in renditions] == ["webp", "png", "jpeg"]
    assert all(isinstance(r, Rendition) for r in renditions)
    assert render(b"not even looked at", []) == []


def test_smaller_renditions_derive_from_the_larger_one(monkeypatch):
    data = encode(picture((4000, 3000)), "JPEG", quality=90)
    alone = decode(render_one(data, THUMB))
    drafts, resized_from = [], []
    original_draft, original_resize = JpegImagePlugin.JpegImageFile.draft, Image.Image.resize

    def spy_draft(self, mode, size):
        drafts.append((mode, size))
        return original_draft(self, mode, size)

    def spy_resize(self, size, *args, **kwargs):
        resized_from.append(self.size)
        return original_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy_draft)
    monkeypatch.setattr(Image.Image, "resize", spy_resize)
    thumb, medium = render(data, DEFAULT_PRESETS)
    # DCT scaling: decoded at 1/2 (2000x1500), the smallest scale covering 1024
    assert drafts == [("RGB", (1024, 1024))]
    assert resized_from[:2] == [(2000, 1500), (1024, 768)]
    assert (thumb.width, thumb.height, medium.width, medium.height) == (256, 192, 1024, 768)
    # and deriving costs no quality worth seeing
    assert mean_difference(decode(thumb), alone) < 1.5
    assert mean_difference(decode(medium), picture((4000, 3000))) < 3


def test_cover_preset_does_not_derive_from_a_cropped_rendition():
    image = picture((900, 300))
    presets = [Preset("wide", 600, 200, fit="cover", format="png"),
               Preset("square", 150, 150, fit="cover", format="png")]
    wide, square = render(encode(image, "PNG"), presets)
    expected = ImageOps.fit(image, (150, 150), Image.Resampling.LANCZOS)
    assert mean_difference(decode(square), expected) < 2
    assert mean_difference(decode(wide), image) < 2


# -- render: orientation ------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_synthetic_orientations_render_upright_with_swapped_size(orientation):
    data = with_orientation(picture((160, 100)), orientation)
    rendition = render_one(data, Preset("t", 80, 80, format="png"))
    expected_size = (50, 80) if orientation >= 5 else (80, 50)
    assert (rendition.width, rendition.height) == expected_size
    assert mean_difference(decode(rendition), upright(data)) < 4


@pytest.mark.parametrize("make", [
    *(made(lambda n=n: with_orientation(picture((128, 128)), n), "jpeg-{}".format(n)) for n in range(2, 9)),
    *(made(lambda n=n: with_orientation(picture((128, 128)), n, "WEBP"), "webp-{}".format(n))
      for n in (3, 6, 8)),
    *(from_corpus("hopper_orientation_{}.jpg".format(n)) for n in (2, 3, 4, 6, 7, 8)),
    from_corpus("hopper_orientation_6.webp"),
])
def test_orientations_render_upright(make):
    data = make()
    thumb = decode(render_one(data, Preset("t", 64, 64, format="png")))
    reference = upright(data)
    stored = Image.open(io.BytesIO(data)).convert("RGB")
    assert thumb.size == (64, 64)
    assert mean_difference(thumb, reference) < 6
    # the comparison can tell: the stored (unrotated) pixels are far off
    assert mean_difference(thumb, stored) > 2 * mean_difference(thumb, reference) + 5


@pytest.mark.parametrize("make", [
    made(lambda: with_orientation(Image.new("RGB", (2, 1), "red"), 8)),
    from_corpus("orientation_rectangle.jpg"),
])
def test_rectangle_orientation_swaps_dimensions(make):
    data = make()  # stored 2x1, orientation 8: shown 1x2
    info = probe(data)
    assert (info.width, info.height) == (1, 2)
    assert decode(render_one(data)).size == (1, 2)


# -- render: colour and modes -------------------------------------------------------------

@pytest.mark.parametrize("make", [made(samples.cmyk_tiff), from_corpus("tiff_strip_cmyk_jpeg.tif")])
def test_cmyk_tiff_becomes_rgb(make):
    data = make()
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode(render_one(data, Preset("p", 100, 100, format="png")))
    assert out.mode == "RGB"
    assert mean_difference(out, Image.open(io.BytesIO(data)).convert("RGB")) < 1


def test_adobe_cmyk_jpeg_becomes_rgb():
    rgb = picture()
    data = encode(rgb.convert("CMYK"), "JPEG", quality=95)  # Pillow writes Adobe (inverted)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode(render_one(data, Preset("p", 160, 160, format="png")))
    assert out.mode == "RGB"
    assert mean_difference(out, rgb) < 4


@pytest.mark.parametrize("make", [made(samples.dark_16bit_tiff), from_corpus("16bit.cropped.tif")])
def test_16bit_tiff_is_scaled_not_clipped(make):
    data = make()  # values 291..694 of 65535: a dark image
    source = Image.open(io.BytesIO(data))
    assert source.mode == "I;16"
    out = decode(render_one(data, Preset("p", 64, 64, format="png")))
    assert out.mode == "L"
    expected = source.convert("I").point(lambda value: value / 257).convert("L")
    assert mean_difference(out, expected) < 1
    low, high = out.getextrema()
    assert high < 10 and high > low  # neither white nor flat black
    # correlation with the source: the brightest source pixel stays among the brightest
    brightest = max(((x, y) for x in range(64) for y in range(64)), key=source.getpixel)
    assert out.getpixel(brightest) == high


def test_16bit_full_scale():
    image = Image.new("I;16", (4, 1))
    for x, value in enumerate((0, 257, 32768, 65535)):
        image.putpixel((x, 0), value)
    out = decode(render_one(encode(image, "PNG"), Preset("p", 4, 4, format="png")))
    assert out.mode == "L"
    assert [out.getpixel((x, 0)) for x in range(4)] == [0, 1, 128, 255]


@pytest.mark.parametrize("make", [
    made(lambda: [samples.lab_tiff(picture((128, 128))), encode(picture((128, 128)), "PNG")]),
    from_corpus("hopper.Lab.tif", "hopper.tif"),
])
def test_lab_tiff_becomes_rgb(make):
    data, rgb_version = make()
    assert Image.open(io.BytesIO(data)).mode == "LAB"
    out = decode(render_one(data, Preset("p", 128, 128, format="png")))
    assert out.mode == "RGB"
    assert mean_difference(out, Image.open(io.BytesIO(rgb_version))) < 4


@pytest.mark.parametrize("make", [
    made(lambda: samples.bilevel_multipage_tiff((1448, 2048), pages=3)), from_corpus("g4-multi.tiff")])
def test_bilevel_multipage_g4_tiff_renders_its_first_page(make):
    data = make()  # 3 pages of mode "1", CCITT group 4
    assert Image.open(io.BytesIO(data)).mode == "1"
    rendition = render_one(data, Preset("p", 1024, 1024, format="png"))
    out = decode(rendition)
    assert out.mode == "L" and out.size == (724, 1024)
    first_page = Image.open(io.BytesIO(data)).convert("L")
    assert mean_difference(out, first_page) < 6
    assert out.getextrema() == (0, 255)


@pytest.mark.parametrize("make", [made(samples.gray_jpeg), from_corpus("hopper_gray.jpg")])
def test_grayscale_stays_gray(make):
    data = make()
    png, jpeg, webp = render(data, [Preset("p", 128, 128, format="png"),
                                    Preset("j", 128, 128, format="jpeg"),
                                    Preset("w", 128, 128)])
    assert decode(png).mode == "L" and decode(jpeg).mode == "L"
    red, green, blue = decode(webp).convert("RGB").split()
    assert ImageChops.difference(red, green).getextrema()[1] <= 3
    assert ImageChops.difference(green, blue).getextrema()[1] <= 3
    assert mean_difference(decode(png), upright(data)) < 2


@pytest.mark.parametrize("make", [
    made(samples.palette_with_transparency, "palette-png-trns"),
    made(lambda: encode(samples.transparent_rgba(), "PNG"), "rgba-png"),
    made(samples.rgba_bitfields_bmp, "rgba-bitfields-bmp"),
    made(lambda: encode(samples.transparent_rgba(), "WEBP", lossless=True), "rgba-webp"),
    made(lambda: encode(samples.transparent_rgba(), "AVIF", quality=95), "rgba-avif"),
    *map(from_corpus, ["pil123p.png", "transparent.png", "pil123rgba.png", "rgb32bf-rgba.bmp",
                       "transparent.webp", "transparency.avif"]),
])
@pytest.mark.parametrize("fmt", ["webp", "png", "avif"])
def test_alpha_is_kept(make, fmt):
    data = make()
    source = Image.open(io.BytesIO(data)).convert("RGBA")
    rendition = render_one(data, Preset("p", 256, 256, format=fmt, quality=90))
    out = decode(rendition)
    assert out.mode == "RGBA"
    alpha_difference = ImageChops.difference(out.getchannel("A"), source.getchannel("A"))
    assert ImageStat.Stat(alpha_difference).mean[0] < 3


@pytest.mark.parametrize("make", [made(samples.palette_bmp), from_corpus("bmp_g_pal8.bmp")])
def test_palette_without_transparency_becomes_rgb(make):
    data = make()
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = decode(render_one(data, Preset("p", 256, 256, format="png")))
    assert out.mode == "RGB"
    assert mean_difference(out, Image.open(io.BytesIO(data))) < 1


def test_jpeg_output_flattens_alpha_onto_white():
    image = Image.new("RGBA", (100, 100), (0, 0, 255, 255))
    image.paste((255, 0, 0, 0), (0, 0, 50, 100))  # left half: transparent red
    preset = Preset("j", 100, 100, format="jpeg", quality=95)
    out = decode(render_one(encode(image, "PNG"), preset))
    assert out.mode == "RGB"
    assert mean_difference(out.crop((0, 0, 40, 100)), Image.new("RGB", (40, 100), "white")) < 3
    assert mean_difference(out.crop((60, 0, 100, 100)), Image.new("RGB", (40, 100), "blue")) < 3


def big_wide_gamut_jpeg():
    profile = samples.wide_gamut_profile(padding=300_000)
    return encode(samples.to_profile(samples.saturated((425, 250)), profile), "JPEG",
                  quality=95, icc_profile=profile)


@pytest.mark.parametrize("make", [made(big_wide_gamut_jpeg), from_corpus("icc_profile_big.jpg")])
def test_embedded_icc_profile_is_converted_to_srgb(make):
    data = make()
    # a wide-gamut profile (it visibly matters), big enough to span several APP2 segments
    assert data.count(b"ICC_PROFILE\0") > 1
    source = Image.open(io.BytesIO(data))
    profile = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
    srgb = ImageCms.profileToProfile(source, profile, ImageCms.createProfile("sRGB"))
    out = decode(render_one(data, Preset("p", 1000, 1000, format="png")))
    assert out.info.get("icc_profile") is None
    assert mean_difference(out, srgb) < 1
    assert mean_difference(out, source) > 5


def test_icc_profile_on_rgba_png_keeps_alpha():
    profile = samples.wide_gamut_profile()
    source = samples.transparent_rgba((64, 64))
    stored = samples.to_profile(source.convert("RGB"), profile)
    stored.putalpha(source.getchannel("A"))
    data = encode(stored, "PNG", icc_profile=profile)
    out = decode(render_one(data, Preset("p", 64, 64, format="png")))
    assert out.mode == "RGBA" and out.info.get("icc_profile") is None
    assert mean_difference(out, source) < 2  # converted back to the sRGB it came from
    assert mean_difference(out, stored) > 5
    assert ImageChops.difference(out.getchannel("A"), source.getchannel("A")).getextrema()[1] <= 1


@pytest.mark.parametrize("profile", [
    b"this is not an ICC profile",
    ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),  # wrong colour space
])
def test_unusable_icc_profile_is_ignored(profile):
    image = picture()
    out = decode(render_one(encode(image, "JPEG", quality=95, icc_profile=profile),
                            Preset("p", 160, 160, format="png")))
    assert mean_difference(out, image) < 3


@pytest.mark.parametrize("make", [
    *(made(lambda fmt=fmt: samples.animation(fmt), fmt.lower()) for fmt in ("GIF", "WEBP", "PNG", "AVIF", "TIFF")),
    *map(from_corpus, ["iss634.gif", "iss634.webp", "iss634.apng", "star.avifs", "chi.gif", "multipage.tiff"]),
])
def test_animations_render_their_first_frame(make):
    data = make()
    assert probe(data).frames > 1
    first = Image.open(io.BytesIO(data)).convert("RGBA")
    out = decode(render_one(data, Preset("p", 400, 400, format="png")))
    assert out.size == first.size
    assert mean_difference(out.convert("RGBA"), first) < 1


def test_first_frame_of_a_synthetic_gif():
    frames = [Image.new("RGB", (40, 40), color) for color in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    out = decode(render_one(data, Preset("p", 40, 40, format="png")))
    assert mean_difference(out, frames[0]) < 1


def test_corrupt_later_frame_rejects_the_file():
    frames = [picture((64, 64)), Image.new("RGB", (64, 64), "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert probe(data).frames == 2
    with pytest.raises(InvalidImage, match="frame 2 of 2"):
        render(data[:-40], [THUMB])


# -- render: output -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, pillow_format", [
    ("webp", "WEBP"), ("jpeg", "JPEG"), ("png", "PNG"), ("avif", "AVIF")])
def test_every_output_format_decodes(fmt, pillow_format):
    image = picture((300, 200))
    rendition = render_one(encode(image, "PNG"), Preset("p", 150, 150, format=fmt, quality=90))
    out = decode(rendition)
    assert out.format == pillow_format
    assert rendition.format == fmt and rendition.mime_type == "image/" + fmt
    assert rendition.preset == "p"
    assert out.size == (rendition.width, rendition.height) == (150, 100)
    assert mean_difference(out, image) < 6


def jpeg_with_every_kind_of_metadata():
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"  # Make
    exif[0x0112] = 1
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(picture(), "JPEG", exif=exif.tobytes(), icc_profile=icc, xmp=xmp)
    source = Image.open(io.BytesIO(data))
    assert source.info.get("exif") and source.info.get("icc_profile") and source.info.get("xmp")
    return data


@pytest.mark.parametrize("make", [
    made(jpeg_with_every_kind_of_metadata),
    *map(from_corpus, ["flower.jpg", "xmp_test.jpg", "icc_profile_big.jpg"]),
])
@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_output_carries_no_metadata(make, fmt):
    out = decode(render_one(make(), Preset("p", 100, 100, format=fmt)))
    for key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp"):
        assert not out.info.get(key), key
    assert not out.getexif()


@pytest.mark.parametrize("make", [
    made(lambda: [encode(samples.saturated(), "JPEG", icc_profile=samples.wide_gamut_profile()),
                  samples.palette_with_transparency(), samples.dark_16bit_tiff(),
                  with_orientation(picture(), 6), samples.cmyk_tiff()]),
    from_corpus("icc_profile_big.jpg", "pil123p.png", "16bit.cropped.tif", "hopper_orientation_6.jpg",
                "tiff_strip_cmyk_jpeg.tif"),
])
def test_render_is_thread_safe(make):
    inputs = make()
    presets = [Preset("a", 96, 96), Preset("b", 48, 48, fit="cover", format="png")]
    serial = [[r.data for r in render(data, presets)] for data in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda data: [r.data for r in render(data, presets)], inputs * 4))
    assert parallel == serial * 4


def test_corrupt_avif_stream_is_invalid():
    data = bytearray(encode(picture((64, 48)), "AVIF"))
    for position in range(len(data) - 30, len(data) - 20):  # inside the AV1 payload
        data[position] ^= 0xFF
    with pytest.raises(InvalidImage, match="corrupt"):  # libavif raises RuntimeError
        render(bytes(data), [THUMB])


def test_truncated_jpeg_is_invalid_and_truncation_stays_strict():
    data = encode(picture((400, 300)), "JPEG")
    with pytest.raises(InvalidImage, match="^image data is corrupt or truncated: "):
        render(data[: len(data) // 2], [THUMB])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# -- broken and hostile files ------------------------------------------------------------

def outcome(data):
    """How the pipeline's two steps treat a file: ``probe: <error>``, ``render: <error>`` or ``rendered``."""
    try:
        probe(data)
    except (InvalidImage, TooManyPixels, UnsupportedFormat) as exc:
        return "probe: " + type(exc).__name__, str(exc)
    try:
        render(data, DEFAULT_PRESETS)
    except (InvalidImage, TooManyPixels, UnsupportedFormat) as exc:
        return "render: " + type(exc).__name__, str(exc)
    return "rendered", ""


@pytest.mark.parametrize("name, make, verdict, says", [
    ("eps named .jpg", samples.eps_named_jpeg, "probe: UnsupportedFormat", "EPS images are not accepted"),
    ("zero bytes", lambda: b"", "probe: UnsupportedFormat", "empty"),
    ("PNG header bomb", samples.png_header_bomb, "probe: TooManyPixels", "10000.0 megapixels"),
    ("BMP header bomb", samples.bmp_header_bomb, "probe: TooManyPixels", "megapixels"),
    ("GIF header bomb", samples.gif_header_bomb, "probe: TooManyPixels", "megapixels"),
    ("truncated JPEG", lambda: samples.truncated(encode(picture((400, 300)), "JPEG")),
     "render: InvalidImage", "corrupt or truncated"),
    ("truncated PNG", lambda: samples.truncated(encode(picture((400, 300)), "PNG")),
     "render: InvalidImage", "corrupt or truncated"),
    ("truncated GIF animation", lambda: samples.truncated(samples.animation("GIF", (200, 150)), 0.6),
     "render: InvalidImage", "corrupt"),
])
def test_hostile_files_get_their_verdict(name, make, verdict, says):
    got, message = outcome(make())
    assert got == verdict, (name, message)
    assert says in message
    assert "Traceback" not in message and "BytesIO" not in message and "0x" not in message


def test_mpo_is_rendered_as_the_jpeg_it_starts_with():
    data = samples.mpo()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    info = probe(data)
    assert (info.format, info.mime_type, info.frames) == ("JPEG", "image/jpeg", 2)
    thumb, _ = render(data, DEFAULT_PRESETS)
    assert mean_difference(decode(thumb), picture((160, 120))) < 3
