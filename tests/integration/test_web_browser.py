"""The web page end to end in real headless Chromium: upload, watch live, inspect.

Debian's ``/usr/bin/chromium`` driven by Playwright (``make test`` installs it);
without it this test fails, it does not skip.  The browser runs in its own
process (``tests/browser/page_driver.py``) because Playwright cannot run under
eventlet.

Imaging starts only after the page shows the uploads as pending, so the cards
can only turn ``done``/``failed`` through the page's live status streams.

The uploads are made with Pillow (tests/samples.py).
``WEB_SCREENSHOT_DIR=docs/screenshots`` writes the screenshots there instead
of a temporary folder, uploading photos from the real-world image corpus
(tests/corpus.py) instead: that is how the README's screenshot is made.
"""
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import eventlet
import pytest
from PIL import Image

from imagepipe.rendering.placeholder import thumbhash_to_rgba
from services.gateway import GatewayService
from services.imaging import ImagingService
from services.storage import StorageService
from tests import samples
from tests.browser.page_driver import CHROMIUM, image_id
from tests.corpus import corpus_dir
from tests.helpers import REPO_ROOT

KEY = "browser-test-key"
# the README's screenshot: real photos (and the same three kinds of file as below)
DOCS_FILES = ["flower.jpg", "transparent.png", "truncated_jpeg.jpg",
              "xmp_test.jpg", "chi.gif", "lossless1.webp", "hopper.jpg"]


def write_uploads(folder):
    """A photo-like JPEG, a transparent PNG, and a JPEG whose pixel data is cut short."""
    folder.mkdir()
    contents = {
        "photo.jpg": samples.encode(samples.saturated((640, 480)), "JPEG", quality=90),
        "transparent.png": samples.encode(samples.transparent_rgba((320, 240)), "PNG"),
        "truncated.jpg": samples.truncated(samples.encode(samples.picture((800, 600)), "JPEG")),
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in contents], "photo.jpg", "truncated.jpg"


class PageDriver:
    def __init__(self, base_url, files, screenshot_dir, open_id, api_key=None):
        command = [sys.executable, "-m", "tests.browser.page_driver", "--base-url", base_url,
                   "--screenshot-dir", str(screenshot_dir), "--open", open_id]
        if api_key:
            command += ["--api-key", api_key]
        self.process = subprocess.Popen(
            command + [str(path) for path in files], cwd=REPO_ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def read(self, timeout=120):
        with eventlet.Timeout(timeout):
            line = self.process.stdout.readline()
        if not line:
            self.process.wait(10)
            raise AssertionError("the page driver stopped (exit {}): {}".format(
                self.process.returncode, self.process.stderr.read()[-3000:]))
        return json.loads(line)

    def proceed(self):
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def finish(self):
        message = self.read()
        assert self.process.wait(30) == 0, self.process.stderr.read()[-3000:]
        return message

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def check_placeholder(card, thumb):
    """The card painted the status's ThumbHash and colour, before the thumbnail loaded."""
    width, height, rgba = thumbhash_to_rgba(base64.b64decode(thumb["placeholder"]))
    painted = card["placeholder"]
    assert painted["size"] == [width, height], card["id"]
    # the page's decoder (app.js) and Python's agree pixel for pixel, within
    # rounding (a canvas keeps colours premultiplied by alpha)
    for at in range(0, len(rgba), 4):
        page_pixel, python_pixel = painted["rgba"][at:at + 4], rgba[at:at + 4]
        assert abs(page_pixel[3] - python_pixel[3]) <= 1, (card["id"], at)
        for page_value, python_value in zip(page_pixel[:3], python_pixel[:3]):
            assert abs(page_value - python_value) * python_pixel[3] / 255 <= 2, (card["id"], at)
    assert card["thumb_loaded_at"] and painted["painted_at"] <= card["thumb_loaded_at"], card
    red, green, blue = (int(thumb["color"][i:i + 2], 16) for i in (1, 3, 5))
    assert card["background"] == "rgb({}, {}, {})".format(red, green, blue)


@pytest.mark.parametrize("api_key", [None, KEY], ids=["no-keys", "api-key"])
def test_upload_watch_and_inspect_in_a_real_browser(
        runner_factory, pipeline_config, base_url, web, tmp_path, api_key):
    assert Path(CHROMIUM).is_file(), (
        "{} is missing: the browser test needs Debian's chromium "
        "(apt-get install chromium, or set CHROMIUM; make test installs it)".format(CHROMIUM))
    screenshot_dir = tmp_path
    files, photo, broken = write_uploads(tmp_path / "uploads")
    if os.environ.get("WEB_SCREENSHOT_DIR") and not api_key:
        screenshot_dir = Path(os.environ["WEB_SCREENSHOT_DIR"]).resolve()
        screenshot_dir.mkdir(parents=True, exist_ok=True)
        files, photo, broken = [corpus_dir() / name for name in DOCS_FILES], "flower.jpg", "truncated_jpeg.jpg"
    if api_key:
        pipeline_config["API_KEYS"] = api_key
        web.headers["Authorization"] = "Bearer " + api_key
    ids = {path.name: image_id(path, api_key) for path in files}

    runner_factory(pipeline_config, GatewayService, StorageService).start()
    driver = PageDriver(base_url, files, screenshot_dir, ids[photo], api_key)
    try:
        uploaded = driver.read()
        if api_key:
            assert "needs an API key" in uploaded["key_prompt"]
        assert [row["accepted"] for row in uploaded["uploads"]] == [True] * len(files), uploaded
        assert all(row["progress"] == 1 for row in uploaded["uploads"])
        # no imaging yet: everything waits
        assert {card["badge"] for card in uploaded["cards"]} == {"pending"}, uploaded

        runner_factory(pipeline_config, ImagingService).start()
        driver.proceed()
        finished = driver.finish()
    finally:
        driver.kill()

    assert finished["problems"] == []
    # every card changed while the page watched it, through its event stream
    assert set(ids.values()) <= set(finished["event_streams"])
    cards = {card["id"]: card for card in finished["cards"]}
    for name, identifier in ids.items():
        card, status = cards[identifier], web.get("/images/" + identifier).json()
        assert card["status"] == card["badge"] == status["status"], (name, card, status)
        if status["status"] == "done":
            thumb = status["variants"]["thumb"]
            assert card["thumb"] == [thumb["width"], thumb["height"]], (name, card)
            assert card["thumb_src"].startswith("blob:" if api_key else "/images/")
            check_placeholder(card, thumb)
        else:
            assert card["error"] == status["error"] and status["error"], (name, card)
    assert cards[ids[photo]]["status"] == "done"
    assert cards[ids[broken]]["status"] == "failed"

    flower = web.get("/images/" + ids[photo]).json()
    details = finished["details"]
    assert details["title"] == flower["id"]
    expected_rows = [("original", flower["original"])] + sorted(flower["variants"].items())
    assert [row["name"] for row in details["rows"]] == [name for name, _ in expected_rows]
    for row, (name, info) in zip(details["rows"], expected_rows):
        dimensions = "{} × {}".format(info["width"], info["height"])
        assert row["cells"][:3] == [name, info["format"].upper(), dimensions]

    # the preview is a <picture> whose srcset spans the contain renditions
    assert details["preview_src"].startswith("blob:" if api_key else base_url + "/images/")
    if not api_key:
        assert details["preview_srcset"] == ", ".join(
            "{} {}w".format(flower["variants"][name]["formats"]["webp"]["url"],
                            flower["variants"][name]["width"]) for name in ("thumb", "medium"))

    for path in finished["screenshots"].values():
        with Image.open(path) as shot:
            assert shot.format == "PNG" and shot.width == 1280
