"""Small helpers shared by the test suites (no fixtures here).

The one place for uploading, decoding, comparing and waiting: test modules
never import each other.  Synthetic test images are in tests/samples.py.
"""
import io
import os

import requests
from PIL import Image, ImageChops, ImageFile, ImageOps, ImageStat

from harness.config import REPO_ROOT, load_config  # noqa: F401 (the tests' one place for both)
from harness.hostile import make_progressive_jpeg, repeat_last_scan  # noqa: F401
from harness.processes import free_port  # noqa: F401
from harness.waiting import wait_until


class WebSession(requests.Session):
    """requests.Session with a base URL (nameko's web_session needs Werkzeug 2)."""

    def __init__(self, base_url):
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        if url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", 30)
        return super().request(method, url, *args, **kwargs)


def running_in_ci():
    """CI=true (or 1, yes): suites that need material from beside the repository must run."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def make_jpeg(width=640, height=480, color=(200, 30, 60), exif=None, quality=90):
    image = Image.new("RGB", (width, height), color)
    # a gradient stripe makes orientation checks meaningful
    for x in range(0, width, max(1, width // 16)):
        image.paste((x * 255 // width, 255 - x * 255 // width, 90), (x, 0, x + 2, height // 4))
    out = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    image.save(out, "JPEG", quality=quality, **kwargs)
    return out.getvalue()


def make_png(width=300, height=200, mode="RGBA"):
    image = Image.new(mode, (width, height), (10, 120, 200, 128) if mode == "RGBA" else (10, 120, 200))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def post_upload(web, data, filename="photo.jpg", **kwargs):
    """POST /upload with ``data`` as the image part; the response, whatever it is."""
    return web.post("/upload", files={"image": (filename, data)}, **kwargs)


def upload(web, data, filename="photo.jpg", **kwargs):
    """An accepted upload's image id (the upload must be answered 202)."""
    response = post_upload(web, data, filename, **kwargs)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def decode(data):
    """Image bytes decoded by Pillow (pixels loaded)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def decode_rendition(rendition):
    return decode(rendition.data)


def upright(data):
    """The image as it is meant to be shown: EXIF orientation applied, RGB."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def render_one(data, preset, **kwargs):
    """``render`` with a single preset: its one rendition."""
    from imagepipe.rendering.render import render

    (rendition,) = render(data, [preset], **kwargs)
    return rendition


def forbid_decoding(monkeypatch):
    """Make every pixel-decoding entry point of Pillow raise (header reads still work)."""
    Image.init()  # every plugin's class loaded, so every one is trapped

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("probe decoded pixel data ({})".format(type(self).__name__))

    classes = [ImageFile.ImageFile]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if "load" in vars(cls) or cls is ImageFile.ImageFile:
            monkeypatch.setattr(cls, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)


def mean_difference(a, b):
    """Mean absolute difference per RGB channel (0-255); ``b`` is resized to ``a`` if needed."""
    if a.size != b.size:
        b = b.resize(a.size, Image.Resampling.LANCZOS)
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def wait_for_status(web, image_id, statuses=("done", "failed"), timeout=30.0, headers=None):
    last = {}

    def reached():
        response = web.get("/images/{}".format(image_id), headers=headers)
        assert response.status_code == 200, response.text
        last["body"] = response.json()
        return last["body"] if last["body"]["status"] in statuses else None

    return wait_until(reached, timeout, lambda: "image {} reaching {} (last: {})".format(
        image_id, statuses, last.get("body")))


def rendition_writes(config, image_id):
    """{preset: times written} of an image's renditions, from storage over RPC."""
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy(config, timeout=10) as rpc:
        variants = rpc.storage.get_image(image_id)["variants"]
    return {name: variant["writes"] for name, variant in variants.items()}


def wait_for_writes(config, image_id, expected, timeout=20.0):
    """Wait until storage has written the image's renditions ``expected`` ({preset: count}) times."""
    last = {}

    def reached():
        last["writes"] = rendition_writes(config, image_id)
        return last["writes"] == expected

    wait_until(reached, timeout, lambda: "rendition writes {} of {} (last: {})".format(
        expected, image_id, last.get("writes")))


# what probe() reports for an original, and a rendition's metadata, in store tests
ORIGINAL_INFO = {"format": "JPEG", "mime_type": "image/jpeg", "width": 10, "height": 5, "frames": 1}
RENDITION_META = {"format": "webp", "mime_type": "image/webp", "width": 4, "height": 2}

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class ScratchDatabase:
    """A PostgreSQL database created for one test and dropped afterwards."""

    def __init__(self, admin_url=None):
        import os
        import uuid

        self.admin_url = admin_url or os.environ.get("TEST_POSTGRES_URL", POSTGRES_ADMIN_URL)
        self.name = "imagepipe_test_{}".format(uuid.uuid4().hex[:10])
        self.url = self.admin_url.rsplit("/", 1)[0] + "/" + self.name

    def _admin(self, statement):
        import psycopg

        with psycopg.connect(self.admin_url.replace("postgresql://", "postgres://", 1),
                             autocommit=True) as conn:
            conn.execute(statement)

    def __enter__(self):
        self._admin('CREATE DATABASE "{}"'.format(self.name))
        return self

    def __exit__(self, *exc):
        self._admin('DROP DATABASE IF EXISTS "{}" WITH (FORCE)'.format(self.name))

