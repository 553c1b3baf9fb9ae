"""Phone photos in, formats chosen by the browser, placeholders, smart crop, animation:
through the real HTTP API and services, every answer decoded with Pillow.
"""
import base64
import io
import os
import struct

import pytest
from PIL import Image, ImageStat

from imagepipe.rendering.placeholder import thumbhash_to_rgba
from imagepipe.rendering.probe import apply_pillow_policy
from tests.helpers import make_jpeg, wait_for_status

PRESETS = {
    "thumb": {"width": 256, "height": 256, "fit": "contain", "format": "webp", "quality": 80},
    "square": {"width": 120, "height": 120, "fit": "cover", "format": ["avif", "webp", "jpeg"],
               "quality": 70},
    "anim": {"width": 64, "height": 64, "format": ["webp", "png"], "animated": True},
}


@pytest.fixture
def pipeline_config(pipeline_config):
    pipeline_config["PRESETS"] = PRESETS
    return pipeline_config


def upload(web, data, **params):
    return web.post("/upload", files={"image": ("image", data)}, params=params)


def processed(web, data, **params):
    response = upload(web, data, **params)
    assert response.status_code == 202, response.text
    return wait_for_status(web, response.json()["id"], timeout=60)


def decoded(response):
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


# -- HEIC/HEIF ------------------------------------------------------------------

def heic(image, **options):
    apply_pillow_policy()  # registers pillow-heif's writer in this process too
    out = io.BytesIO()
    image.save(out, "HEIF", **options)
    return out.getvalue()


def noisy(width, height):
    return Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))


def with_claimed_size(data, width, height):
    """The HEIC with every 'ispe' (image spatial extent) box claiming ``width`` x ``height``."""
    out = bytearray(data)
    at = out.find(b"ispe")
    assert at > 0
    while at > 0:
        struct.pack_into(">II", out, at + 8, width, height)
        at = out.find(b"ispe", at + 4)
    return bytes(out)


def test_heic_photos_are_accepted_and_bad_ones_refused_like_any_other(pipeline, web):
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: stored landscape, shown portrait
    photo = heic(noisy(320, 240), exif=exif.tobytes(), quality=60)
    status = processed(web, photo)
    assert status["status"] == "done", status
    original = status["original"]
    assert (original["format"], original["mime_type"]) == ("HEIF", "image/heif")
    assert (original["width"], original["height"], original["frames"]) == (240, 320, 1)
    thumb = decoded(web.get(status["variants"]["thumb"]["url"]))
    assert (thumb.format, thumb.size) == ("WEBP", (192, 256))  # upright, within 256
    assert decoded(web.get(original["url"])).format == "HEIF"

    burst = heic(noisy(200, 100), save_all=True, append_images=[noisy(100, 50)], quality=50)
    status = processed(web, burst)
    assert (status["status"], status["original"]["frames"]) == ("done", 2)
    assert decoded(web.get(status["variants"]["thumb"]["url"])).size == (200, 100)  # the primary

    plain = heic(noisy(320, 240), quality=60)  # no EXIF item: the header is all before the pixels
    truncated = plain[:(plain.index(b"mdat") + len(plain)) // 2]  # the picture cut short
    status = processed(web, truncated)
    assert status["status"] == "failed" and "corrupt or truncated" in status["error"], status

    huge = upload(web, with_claimed_size(photo, 60000, 60000))
    assert (huge.status_code, huge.json()["error"]) == (413, "too_many_pixels")
    garbage = upload(web, photo[:40] + b"\0" * 200)
    assert garbage.status_code == 422 and garbage.json()["error"] == "invalid_image"


# -- formats chosen by Accept -----------------------------------------------------

@pytest.mark.parametrize("accept, wanted", [
    (None, "avif"),                                           # no header: */*
    ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif"),  # Chromium's <img>
    ("image/webp,*/*;q=0.8", "webp"),                         # avif only through */*
    ("image/avif;q=0.5, image/webp;q=0.5, image/jpeg", "jpeg"),
    ("image/avif;q=0.4, image/webp;q=0.4, image/jpeg;q=0.4", "avif"),  # a tie: preset order
    ("image/avif;q=0, */*", "webp"),                          # q=0: not acceptable
    ("image/png", "jpeg"),                                    # nothing acceptable: the fallback
    ("application/json", "jpeg"),
])
def test_the_accept_header_chooses_the_format(pipeline, web, accept, wanted):
    status = processed(web, make_jpeg(400, 300))
    square = status["variants"]["square"]
    headers = {"Accept": accept} if accept else {}
    response = web.get(square["url"], headers=headers)
    assert decoded(response).format == {"avif": "AVIF", "webp": "WEBP", "jpeg": "JPEG"}[wanted]
    assert response.headers["Content-Type"] == "image/" + wanted
    assert response.headers["Vary"] == "Accept"
    assert response.headers["Content-Location"] == square["formats"][wanted]["url"]
    assert response.headers["ETag"].strip('"') in (
        web.get(square["formats"][wanted]["url"]).headers["ETag"].strip('"'),)
    revalidated = web.get(square["url"], headers=dict(headers, **{
        "If-None-Match": response.headers["ETag"]}))
    assert revalidated.status_code == 304 and revalidated.headers["Vary"] == "Accept"


def test_every_format_has_its_own_url_and_the_status_lists_them(pipeline, web):
    status = processed(web, make_jpeg(400, 300))
    image_id = status["id"]
    square = status["variants"]["square"]
    assert list(square["formats"]) == ["avif", "webp", "jpeg"]
    assert (square["format"], square["mime_type"]) == ("avif", "image/avif")
    for fmt, info in square["formats"].items():
        assert info["url"] == "/images/{}/square.{}".format(image_id, fmt)
        response = web.get(info["url"], headers={"Accept": "image/png"})  # Accept is ignored here
        image = decoded(response)
        assert image.format == fmt.upper() and image.size == (info["width"], info["height"]) == (120, 120)
        assert len(response.content) == info["bytes"]
        assert "Vary" not in response.headers and response.headers["Cache-Control"].startswith("public")
    assert list(status["variants"]["thumb"]["formats"]) == ["webp"]
    for path in ("thumb.avif", "square.png", "square.gif", "original.webp", "events.webp",
                 "square.", "Square.webp", "square.webp.webp"):
        missing = web.get("/images/{}/{}".format(image_id, path))
        assert missing.status_code == 404 and missing.json()["error"] == "not_found", path


# -- placeholders --------------------------------------------------------------------

def test_status_carries_a_thumbhash_and_the_dominant_colour(pipeline, web):
    image = Image.new("RGB", (600, 400), (20, 90, 200))  # mostly blue, a red block on the left
    image.paste((220, 30, 30), (0, 0, 150, 400))
    out = io.BytesIO()
    image.save(out, "PNG")
    status = processed(web, out.getvalue())
    thumb = status["variants"]["thumb"]
    assert thumb["color"] == "#{:02x}{:02x}{:02x}".format(20, 90, 200)
    width, height, rgba = thumbhash_to_rgba(base64.b64decode(thumb["placeholder"]))
    assert (width, height) == (32, 23)  # the hash keeps the aspect ratio, roughly (7:5)
    preview = Image.frombytes("RGBA", (width, height), rgba).convert("RGB")
    left, right = preview.crop((0, 0, 4, height)), preview.crop((width - 8, 0, width, height))
    assert ImageStat.Stat(left).mean[0] > 120 > ImageStat.Stat(right).mean[0]   # red, then blue
    assert ImageStat.Stat(right).mean[2] > 150
    # the square cover crop has its own placeholder, of its own region
    assert status["variants"]["square"]["placeholder"] != thumb["placeholder"]


# -- smart crop ----------------------------------------------------------------------

def two_halves():
    image = Image.new("RGB", (800, 400), (240, 240, 240))
    image.paste((30, 160, 40), (400, 0, 800, 400))  # right half green
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def subject_on_the_right():
    """A real photo as the subject, on a flat background, at the right edge."""
    from tests.corpus import read

    background = Image.new("RGB", (900, 300), (128, 128, 128))
    subject = Image.open(io.BytesIO(read("flower.jpg"))).convert("RGB")
    subject.thumbnail((250, 250))
    background.paste(subject, (900 - subject.width - 10, 25))
    out = io.BytesIO()
    background.save(out, "JPEG", quality=92)
    return out.getvalue(), subject


def test_cover_crops_around_an_explicit_focus_that_wins(pipeline, web):
    data = two_halves()
    status = processed(web, data, focus="0.9,0.5")
    assert status["focus"] == {"x": 0.9, "y": 0.5}
    square = status["variants"]["square"]
    assert square["focus"] == {"x": 0.9, "y": 0.5}
    crop = decoded(web.get(square["formats"]["webp"]["url"])).convert("RGB")
    assert ImageStat.Stat(crop).mean[1] > 140 and ImageStat.Stat(crop).mean[0] < 60  # all green
    assert status["variants"]["thumb"]["focus"] is None  # contain: no crop

    left = processed(web, make_jpeg(640, 320), focus="0,0")  # as a multipart field works too
    assert left["focus"] == {"x": 0.0, "y": 0.0}


@pytest.mark.corpus  # reads real-world files of the corpus
def test_cover_crops_around_the_salient_subject_by_default(pipeline, web):
    data, subject = subject_on_the_right()
    status = processed(web, data)
    assert status["focus"] is None
    focus = status["variants"]["square"]["focus"]
    assert focus["x"] > 0.6, focus
    crop = decoded(web.get(status["variants"]["square"]["formats"]["jpeg"]["url"])).convert("RGB")
    # the subject fills about half of the square the crop takes at the right;
    # a centre crop would show the grey background alone
    grey = sum(1 for pixel in crop.get_flattened_data()
               if max(abs(channel - 128) for channel in pixel) <= 12)
    assert grey / (crop.width * crop.height) < 0.6


@pytest.mark.parametrize("value", ["1.5,0.5", "0.5", "a,b", "0.1,0.2,0.3", "nan,0.5", "-0.1,0", "inf,1"])
def test_a_bad_focus_is_refused_before_anything_is_stored(pipeline, web, value):
    response = upload(web, make_jpeg(64, 64), focus=value)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_focus" and response.json()["message"]
    assert web.get("/images").json()["images"] == []


def test_focus_given_twice_differently_is_refused(pipeline, web):
    response = web.post("/upload?focus=0.1,0.1", files={"image": ("a.jpg", make_jpeg(64, 64))},
                        data={"focus": "0.9,0.9"})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_focus")


# -- animation ---------------------------------------------------------------------

def animated_gif(frames=6, loop=2, size=(160, 120)):
    images = [Image.new("RGB", size, (40 * index, 255 - 40 * index, 90)) for index in range(frames)]
    out = io.BytesIO()
    options = {} if loop is None else {"loop": loop}
    images[0].save(out, "GIF", save_all=True, append_images=images[1:],
                   duration=[100 * (index + 1) for index in range(frames)], **options)
    return out.getvalue()


def frames_of(image):
    durations = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        image.load()
        durations.append(int(image.info.get("duration") or 0))
    return durations, image.info.get("loop")


def test_animated_presets_keep_frames_timing_and_loop(pipeline, web):
    status = processed(web, animated_gif())
    assert status["original"]["frames"] == 6
    anim = status["variants"]["anim"]
    assert {fmt: info["frames"] for fmt, info in anim["formats"].items()} == {"webp": 6, "png": 6}
    expected = [100, 200, 300, 400, 500, 600]
    webp = decoded(web.get(anim["formats"]["webp"]["url"]))
    assert (webp.format, webp.n_frames, webp.size) == ("WEBP", 6, (64, 48))
    assert frames_of(webp) == (expected, 2)
    apng = decoded(web.get(anim["formats"]["png"]["url"]))
    assert (apng.format, apng.n_frames) == ("PNG", 6)
    assert frames_of(apng) == (expected, 2)
    webp.seek(3)
    assert webp.convert("RGB").getpixel((10, 10))[0] > 100  # the frames differ: not a still
    thumb = decoded(web.get(status["variants"]["thumb"]["url"]))
    assert getattr(thumb, "n_frames", 1) == 1  # not animated: the first frame, as before

    once = processed(web, animated_gif(frames=3, loop=None))  # no NETSCAPE loop: plays once
    assert frames_of(decoded(web.get(once["variants"]["anim"]["formats"]["webp"]["url"])))[1] == 1


@pytest.mark.parametrize("cap", [
    {"ANIMATION_MAX_FRAMES": 5},
    {"ANIMATION_MAX_SECONDS": 1.5},       # 2.1 s of frames
    {"ANIMATION_MAX_PIXELS": 10_000},     # 64 x 48 pixels x 6 frames = 18 432
])
def test_over_a_cap_an_animation_is_its_first_frame(runner_factory, pipeline_config, web, cap):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService

    pipeline_config.update(cap)
    runner_factory(pipeline_config, GatewayService, ImagingService, StorageService).start()
    status = processed(web, animated_gif())
    assert status["status"] == "done" and status["original"]["frames"] == 6
    anim = status["variants"]["anim"]
    assert {info["frames"] for info in anim["formats"].values()} == {1}
    still = decoded(web.get(anim["formats"]["webp"]["url"]))
    assert getattr(still, "n_frames", 1) == 1
