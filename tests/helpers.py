"""Small helpers shared by the test suites (no fixtures here)."""
import io
import time

import requests
from PIL import Image

from harness.config import REPO_ROOT, load_config  # noqa: F401 (the tests' one place for both)
from harness.hostile import make_progressive_jpeg, repeat_last_scan  # noqa: F401


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


def wait_for_status(web, image_id, statuses=("done", "failed"), timeout=30.0):
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        response = web.get("/images/{}".format(image_id))
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError("image {} did not reach {} within {} s; last: {}".format(
        image_id, statuses, timeout, body))


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

