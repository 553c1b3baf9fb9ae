"""Presets change and stored images follow -- with caches that stay correct.

Real services over real RabbitMQ, real HTTP.  A pipeline runs with one set of
presets, stops, and starts again with another, as after an edit of
config.yaml; ``reprocess`` (here through a standalone RPC proxy, what
``nameko shell`` gives an operator) renders what the new presets need.
"""
import io
import time
from pathlib import Path

import pytest
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy
from PIL import Image

from imagepipe.cli import prune_all, reprocess_all
from services import topology
from services.extensions.rpc import register_remote_errors
from services.gateway import GatewayService
from services.imaging import ImagingService
from services.storage import StorageService
from tests.helpers import make_jpeg, wait_for_status

THUMB = {"width": 64, "height": 64, "fit": "contain", "format": "webp", "quality": 80}
SMALL = {"width": 32, "height": 32, "fit": "cover", "format": "jpeg", "quality": 70}


def start(runner_factory, config, presets, *services):
    runner = runner_factory(dict(config, PRESETS=presets),
                            *(services or (GatewayService, ImagingService, StorageService)))
    runner.start()
    return runner


@pytest.fixture
def storage(pipeline_config):
    register_remote_errors()
    with ClusterRpcProxy(pipeline_config, timeout=30) as cluster:
        yield cluster.storage


def upload(web, data):
    response = web.post("/upload", files={"image": ("photo.jpg", data)})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def queued_jobs(config):
    """The job queue's waiting jobs, in order (read and handed back unacknowledged)."""
    with Connection(config["AMQP_URI"]) as conn:
        channel = conn.channel()
        queue = topology.job_queue(config)(channel)
        jobs = []
        while (message := queue.get(no_ack=False, accept=["json", "msgpack"])) is not None:
            jobs.append(message.payload)
        channel.close()  # unacknowledged: back in the queue, in order
    return jobs


def test_a_rerender_gets_new_versioned_urls_and_the_plain_url_revalidates(
        runner_factory, pipeline_config, web, storage):
    first = start(runner_factory, pipeline_config, {"thumb": THUMB})
    image_id = upload(web, make_jpeg(800, 600, color=(30, 90, 150)))
    before = wait_for_status(web, image_id)["variants"]["thumb"]
    assert before["versioned_url"] == before["url"] + "?v=" + before["version"]

    plain = web.get(before["url"])
    assert plain.headers["Cache-Control"] == "public, no-cache"
    assert web.get(before["url"], headers={"If-None-Match": plain.headers["ETag"]}).status_code == 304
    versioned = web.get(before["versioned_url"])
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert versioned.content == plain.content and versioned.headers["ETag"] == plain.headers["ETag"]
    status_before = web.get("/images/" + image_id).json()

    # the preset is retuned; reprocess renders every preset again
    first.stop()
    start(runner_factory, pipeline_config, {"thumb": dict(THUMB, quality=20)})
    assert reprocess_all(storage, every=True, quiet=True) == 1
    status = wait_until(web, image_id, lambda now: now["variants"] != status_before["variants"],
                        "a new rendering")
    after = status["variants"]["thumb"]
    assert after["version"] != before["version"] and after["bytes"] < before["bytes"]
    assert status["updated_at"] > status_before["updated_at"]

    # the plain URL now answers the new bytes, even to a cache holding the old ETag
    fresh = web.get(before["url"], headers={"If-None-Match": plain.headers["ETag"]})
    assert fresh.status_code == 200 and fresh.content != plain.content
    assert fresh.headers["ETag"] != plain.headers["ETag"]
    # the old versioned URL never answers other bytes: it points at the current version
    stale = web.get(before["versioned_url"], allow_redirects=False)
    assert stale.status_code == 302 and stale.content == b""
    assert stale.headers["Location"] == after["versioned_url"]
    assert stale.headers["Cache-Control"] == "no-cache"
    assert web.get(before["versioned_url"]).content == fresh.content  # following it
    # each format's own URL the same way: a new version, the old one leads to it
    old_webp, new_webp = before["formats"]["webp"], after["formats"]["webp"]
    assert old_webp["version"] != new_webp["version"]
    moved = web.get(old_webp["versioned_url"], allow_redirects=False)
    assert (moved.status_code, moved.headers["Location"]) == (302, new_webp["versioned_url"])
    current = web.get(new_webp["versioned_url"])
    assert current.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Vary" not in current.headers  # one format: no Accept negotiation


def wait_until(web, image_id, predicate, what, timeout=60.0):
    """The image's status once ``predicate(status)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = web.get("/images/" + image_id).json()
        if predicate(status):
            return status
        time.sleep(0.1)
    raise AssertionError("image {}: {} did not happen".format(image_id, what))


def test_reprocess_renders_missing_presets_paced_behind_new_uploads(
        runner_factory, pipeline_config, web, storage):
    first = start(runner_factory, pipeline_config, {"thumb": THUMB})
    stored = sorted(upload(web, make_jpeg(320, 240, color=(n * 40, 80, 200 - n * 30)))
                    for n in range(5))
    for image_id in stored:
        wait_for_status(web, image_id)
    first.stop()

    # a preset is added; no imaging runs yet, so the queue only fills
    presets = {"thumb": THUMB, "small": SMALL}
    front = start(runner_factory, pipeline_config, presets, GatewayService, StorageService)
    assert storage.reprocess_plan() == {"images": 5, "presets": ["thumb", "small"]}
    step = storage.reprocess_batch(None, False, 3)
    assert (step["enqueued"], step["finished"], step["waiting"]) == (3, False, 3)
    assert storage.reprocess_batch(step["cursor"], False, 3)["enqueued"] == 0  # full: wait
    # a new upload waits behind those three jobs, not behind every stored image
    newcomer = upload(web, make_jpeg(200, 200, color=(250, 250, 0)))
    assert queued_jobs(front.config) == [
        {"id": image_id, "reprocess": True, "presets": ["small"]} for image_id in stored[:3]
    ] + [{"id": newcomer}]

    start(runner_factory, pipeline_config, presets, ImagingService)
    # the rest of the run: the two images the first step had no room for
    assert reprocess_all(storage, max_waiting=3, quiet=True, pause=0.1, cursor=step["cursor"]) == 2
    for image_id in stored + [newcomer]:
        status = wait_until(web, image_id, lambda now: "small" in now["variants"], "a small rendition")
        small = Image.open(io.BytesIO(web.get(status["variants"]["small"]["url"]).content))
        assert (small.format, small.size) == ("JPEG", (32, 32))
    for image_id in stored:  # only the missing preset was rendered
        assert storage.get_image(image_id)["variants"]["thumb"]["writes"] == 1
    assert storage.reprocess_plan() == {"images": 0, "presets": ["thumb", "small"]}
    assert reprocess_all(storage, quiet=True) == 0


def test_renditions_of_removed_presets_are_listed_then_pruned(
        runner_factory, pipeline_config, web, storage, capsys):
    first = start(runner_factory, pipeline_config, {"thumb": THUMB, "small": SMALL})
    image_ids = [upload(web, make_jpeg(300, 300, color=(n, 2 * n, 3 * n))) for n in (10, 60)]
    before = {image_id: wait_for_status(web, image_id) for image_id in image_ids}
    first.stop()

    start(runner_factory, pipeline_config, {"thumb": THUMB}, GatewayService, StorageService)
    listed = prune_all(storage, delete=False, quiet=True)
    assert listed == {"small.jpeg": {"renditions": 2, "bytes": sum(
        status["variants"]["small"]["bytes"] for status in before.values())}}
    assert web.get(before[image_ids[0]]["variants"]["small"]["url"]).status_code == 200  # listing only

    prune_all(storage, delete=True, quiet=True)
    assert storage.stale_renditions() == {}
    for image_id, status in before.items():
        after = web.get("/images/" + image_id).json()
        assert list(after["variants"]) == ["thumb"]
        assert after["updated_at"] > status["updated_at"]
        assert web.get(status["variants"]["small"]["url"]).status_code == 404
    variants = Path(pipeline_config["STORAGE_ROOT"]) / "variants"
    files = [path.name for path in variants.rglob("*") if path.is_file()]
    assert sorted(files) == ["thumb.webp", "thumb.webp"]
    out = capsys.readouterr().out
    assert "small.jpeg: 2 renditions" in out and "deleted 2 renditions" in out
