"""ThumbHash, dominant colour, focal points, Accept negotiation and preset formats: plain modules."""
import base64
import io

import pytest
from PIL import Image

from imagepipe.errors import InvalidFocus, NotFound
from imagepipe.rendering.focus import auto_focus, crop_region, focus_from, parse_focus
from imagepipe.rendering.placeholder import (
    approximate_aspect_ratio, dominant_color, placeholder_for, thumbhash, thumbhash_to_rgba)
from imagepipe.rendering.presets import Preset
from imagepipe.web.negotiation import choose_format, rendition_path
from tests.corpus import read

# Computed by the independent thumbhash-python 1.0.1 (rgba_to_thumbhash) from the
# same 32 px thumbnails; that package pins Pillow < 11, so it is not a dependency.
ORACLE = {
    "hopper.jpg": "lhcKLwZQtnleiIehmIh3t2eI2EBZDpYD",
    "transparent.png": "VjiCFIQkb9HQHWi2AAMiOpKAcLd4R6h2BQ==",
    "lossless1.webp": "Q/iBCoAlcg14iMVwePR4uIeXiIdwd3c=",
    "xmp_test.jpg": "IAgGDIAEh2iMd3iFiIcad5CxBw==",
}


@pytest.mark.corpus  # reads real-world files of the corpus
@pytest.mark.parametrize("name", sorted(ORACLE))
def test_thumbhash_matches_an_independent_implementation(name):
    image = Image.open(io.BytesIO(read(name))).convert("RGBA")
    image.thumbnail((32, 32))
    assert base64.b64encode(thumbhash(image)).decode() == ORACLE[name]


def test_the_decoded_hash_keeps_colours_aspect_and_alpha():
    image = Image.new("RGBA", (90, 30), (200, 40, 40, 255))
    image.paste((0, 0, 0, 0), (60, 0, 90, 30))  # transparent right third
    hashed = thumbhash(image.resize((30, 10)))
    assert approximate_aspect_ratio(hashed) == 5 / 2
    width, height, rgba = thumbhash_to_rgba(hashed)
    decoded = Image.frombytes("RGBA", (width, height), rgba)
    assert decoded.getpixel((2, height // 2))[0] > 150 and decoded.getpixel((2, height // 2))[3] > 200
    assert decoded.getpixel((width - 1, height // 2))[3] < 80


def test_placeholder_and_dominant_colour_of_mostly_one_colour():
    image = Image.new("RGB", (300, 200), (10, 200, 30))
    image.paste((250, 250, 250), (0, 0, 60, 200))
    result = placeholder_for(image)
    assert result["color"] == "#0ac81e"
    assert len(base64.b64decode(result["placeholder"])) < 30
    transparent = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert dominant_color(transparent) == "#ff0000"  # nothing opaque: every pixel counts


@pytest.mark.parametrize("value, point", [("0.5,0.25", (0.5, 0.25)), (" 0 , 1 ", (0.0, 1.0)),
                                          ("", None), (None, None)])
def test_focus_values(value, point):
    assert parse_focus(value) == point


@pytest.mark.parametrize("value", ["1.01,0", "0.5", "x,y", "nan,0", "inf,0", "-0.5,0.5", "1,2,3"])
def test_bad_focus_values(value):
    with pytest.raises(InvalidFocus):
        parse_focus(value)


def test_focus_from_query_or_form_but_not_two_different_ones():
    assert focus_from({"focus": "0.1,0.2"}, {}) == (0.1, 0.2)
    assert focus_from({}, {"focus": "0.1,0.2"}) == (0.1, 0.2)
    assert focus_from({"focus": "0.1,0.2"}, {"focus": "0.1,0.2"}) == (0.1, 0.2)
    with pytest.raises(InvalidFocus):
        focus_from({"focus": "0.1,0.2"}, {"focus": "0.3,0.2"})


def test_crop_region_centres_on_the_focus_within_the_image():
    assert crop_region((400, 200), 1.0, (0.5, 0.5)) == (100, 0, 300, 200)
    assert crop_region((400, 200), 1.0, (0.9, 0.5)) == (200, 0, 400, 200)  # clamped at the edge
    assert crop_region((400, 200), 1.0, (0.3, 0.0)) == (20, 0, 220, 200)
    assert crop_region((200, 400), 2.0, (0.5, 0.0)) == (0, 0, 200, 100)


@pytest.mark.corpus  # reads real-world files of the corpus
def test_auto_focus_finds_the_detailed_part_and_the_centre_of_a_flat_image():
    image = Image.new("RGB", (600, 200), (120, 120, 120))
    subject = Image.open(io.BytesIO(read("hopper.jpg"))).convert("RGB")
    image.paste(subject.resize((150, 150)), (20, 25))
    x, y = auto_focus(image)
    assert x < 0.25 and 0.3 < y < 0.7
    assert auto_focus(Image.new("RGB", (50, 50), "white")) == (0.5, 0.5)


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (300, 1), (2, 2), (2, 50), (3, 3)])
def test_auto_focus_of_a_sliver_is_a_point_inside_it(size):
    # a map this thin is all kernel border: no pixel of it says where a subject is
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    x, y = auto_focus(image)
    assert 0 <= x <= 1 and 0 <= y <= 1


FORMATS = {"avif": {"mime_type": "image/avif", "rank": 0}, "webp": {"mime_type": "image/webp", "rank": 1},
           "jpeg": {"mime_type": "image/jpeg", "rank": 2}}


@pytest.mark.parametrize("accept, chosen", [
    (None, "avif"), ("", "avif"), ("*/*", "avif"), ("image/webp", "webp"),
    ("image/webp;q=0.9, image/jpeg", "jpeg"), ("image/*;q=0.5, image/avif;q=0.1", "webp"),
    ("image/avif;q=0", "jpeg"), ("text/html", "jpeg"), ("garbage;;,", "jpeg"),
    ("image/avif;q=x, image/webp;q=0.2", "webp"), ("IMAGE/AVIF", "avif"),
])
def test_choose_format(accept, chosen):
    assert choose_format(FORMATS, accept) == chosen


def test_rendition_paths():
    assert rendition_path("thumb") == ("thumb", None)
    assert rendition_path("thumb.avif") == ("thumb", "avif")
    for bad in ("thumb.gif", "original.webp", "events.png", ".webp", "Thumb.webp", "a.b.webp"):
        with pytest.raises(NotFound):
            rendition_path(bad)


def test_presets_take_one_format_or_a_list():
    preset = Preset.from_config("card", {"width": 4, "height": 3, "format": ["AVIF", "webp", "jpeg"],
                                         "animated": True})
    assert (preset.formats, preset.format, preset.mime_type, preset.animated) == (
        ("avif", "webp", "jpeg"), "avif", "image/avif", True)
    assert Preset.from_config("t", {"width": 4, "height": 3, "format": "png"}).formats == ("png",)
    for bad in ({"format": []}, {"format": ["webp", "webp"]}, {"format": ["gif"]},
                {"animated": "yes"}, {"format": 3}):
        with pytest.raises(ValueError):
            Preset.from_config("t", dict({"width": 4, "height": 3}, **bad))
