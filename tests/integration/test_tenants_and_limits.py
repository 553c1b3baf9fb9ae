"""Keys as tenants, rate limits, quotas, cache headers and stored originals, over real HTTP."""
import io
import socket
import time

import pytest
from PIL import Image

from tests.helpers import make_jpeg, make_png, wait_for_status

KEY_A, KEY_B = "alice:key-of-alice", "bob:key-of-bob"
AS_A = {"Authorization": "Bearer key-of-alice"}
AS_B = {"Authorization": "Bearer key-of-bob"}


@pytest.fixture
def services():
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService
    from services.webhooks import WebhookService

    return GatewayService, ImagingService, StorageService, WebhookService


@pytest.fixture
def keyed(runner_factory, pipeline_config, services):
    pipeline_config["API_KEYS"] = ",".join([KEY_A, KEY_B])
    runner_factory(pipeline_config, *services).start()
    return pipeline_config


def gps_jpeg():
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0)})
    out = io.BytesIO()
    Image.open(io.BytesIO(make_jpeg(200, 150))).save(out, "JPEG", exif=exif, comment=b"me@example.org")
    return out.getvalue()


def test_each_key_sees_only_its_own_images(keyed, web):
    data = make_jpeg(120, 90)
    mine = web.post("/upload", files={"image": ("a.jpg", data)}, headers=AS_A).json()
    wait_for_status(web, mine["id"], headers=AS_A)
    for path in ("", "/original", "/thumb", "/events"):
        response = web.get("/images/" + mine["id"] + path, headers=AS_B)
        assert (response.status_code, response.json()["error"]) == (404, "not_found"), path
    assert web.get("/images", headers=AS_B).json()["images"] == []
    assert [image["id"] for image in web.get("/images", headers=AS_A).json()["images"]] == [mine["id"]]
    # the same bytes from the other key are the other key's own image
    theirs = web.post("/upload", files={"image": ("a.jpg", data)}, headers=AS_B).json()
    assert theirs["id"] != mine["id"]
    again = web.post("/upload", files={"image": ("b.jpg", data)}, headers=AS_A).json()
    assert again["id"] == mine["id"]  # deduplicated within the tenant


def test_another_key_cannot_take_over_a_callback(runner_factory, pipeline_config, services, web):
    from nameko.standalone.rpc import ClusterRpcProxy

    pipeline_config.update(API_KEYS=",".join([KEY_A, KEY_B]), WEBHOOK_ALLOW_PRIVATE="true",
                           WEBHOOK_ALLOWED_PORTS="any")
    runner_factory(pipeline_config, *services).start()
    data = make_png(64, 64)
    mine = web.post("/upload?callback_url=http://127.0.0.1:9/alice", files={"image": ("a.png", data)},
                    headers=AS_A).json()
    theirs = web.post("/upload?callback_url=http://127.0.0.1:9/bob", files={"image": ("a.png", data)},
                      headers=AS_B).json()
    with ClusterRpcProxy(pipeline_config, timeout=10) as rpc:
        assert rpc.storage.get_image(mine["id"])["callback_url"] == "http://127.0.0.1:9/alice"
        assert rpc.storage.get_image(theirs["id"])["callback_url"] == "http://127.0.0.1:9/bob"


def test_with_keys_images_are_private_and_vary_by_key(keyed, web):
    image_id = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64))}, headers=AS_A).json()["id"]
    status = wait_for_status(web, image_id, headers=AS_A)
    for url in (status["original"]["url"], status["variants"]["thumb"]["url"]):
        response = web.get(url, headers=AS_A)
        assert response.status_code == 200
        assert response.headers["Cache-Control"].startswith("private, ")
        assert "Authorization" in response.headers["Vary"]


def test_without_keys_images_are_public(pipeline, web):
    image_id = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64))}).json()["id"]
    status = wait_for_status(web, image_id)
    response = web.get(status["original"]["url"])
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Vary" not in response.headers


def test_stored_originals_carry_no_location_comment_or_trailing_bytes(pipeline, web):
    uploaded = gps_jpeg() + b"free file hosting" * 1000
    image_id = web.post("/upload", files={"image": ("gps.jpg", uploaded)}).json()["id"]
    original = web.get(wait_for_status(web, image_id)["original"]["url"]).content
    assert len(original) < len(uploaded) - 17000
    assert b"me@example.org" not in original and b"PhoneMaker" not in original
    assert not Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)


def test_keep_metadata_stores_uploads_as_they_are(runner_factory, pipeline_config, services, web):
    pipeline_config["KEEP_METADATA"] = "true"
    runner_factory(pipeline_config, *services).start()
    uploaded = gps_jpeg()
    image_id = web.post("/upload", files={"image": ("gps.jpg", uploaded)}).json()["id"]
    assert web.get(wait_for_status(web, image_id)["original"]["url"]).content == uploaded


def test_uploads_over_the_rate_get_429_with_retry_after(runner_factory, pipeline_config, services, web):
    pipeline_config["RATE_LIMIT_UPLOADS"] = "3/minute"
    runner_factory(pipeline_config, *services).start()
    answers = [web.post("/upload", files={"image": ("a.jpg", make_jpeg(32, 32, color=(i, 9, 9)))})
               for i in range(4)]
    assert [answer.status_code for answer in answers] == [202, 202, 202, 429]
    assert answers[-1].json()["error"] == "rate_limited"
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert web.get("/health").status_code == 200  # health is never limited


def test_uploads_over_the_quota_get_507_and_nothing_is_stored(runner_factory, pipeline_config,
                                                              services, web):
    pipeline_config.update(API_KEYS=KEY_A, TENANT_QUOTA_BYTES=3000)
    runner_factory(pipeline_config, *services).start()
    first = web.post("/upload", files={"image": ("a.png", make_png(8, 8))}, headers=AS_A)
    assert first.status_code == 202
    big = web.post("/upload", files={"image": ("b.jpg", make_jpeg(400, 300))}, headers=AS_A)
    assert (big.status_code, big.json()["error"]) == (507, "quota_exceeded")
    assert len(web.get("/images", headers=AS_A).json()["images"]) == 1


def test_below_the_free_disk_floor_uploads_get_507(runner_factory, pipeline_config, services, web):
    pipeline_config["MIN_FREE_DISK_BYTES"] = 2 ** 62
    runner_factory(pipeline_config, *services).start()
    response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64))})
    assert (response.status_code, response.json()["error"]) == (507, "insufficient_storage")
    assert web.get("/images").json()["images"] == []


def test_a_chunked_upload_is_read(pipeline, web):
    data = make_jpeg(100, 80)
    chunks = (data[index:index + 1000] for index in range(0, len(data), 1000))
    response = web.post("/upload", data=chunks, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 202, response.text
    assert wait_for_status(web, response.json()["id"])["status"] == "done"


def test_a_doubled_slash_redirects_with_a_location(pipeline, web):
    response = web.get("//images//" + "a" * 32, allow_redirects=False)
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/images/" + "a" * 32)
    assert response.json()["error"] == "permanent_redirect"


def test_a_body_that_stops_coming_gets_408_and_frees_its_connection(
        runner_factory, pipeline_config, services, base_url, web):
    pipeline_config.update(HTTP_SOCKET_TIMEOUT=1, HTTP_RATE_GRACE=1)
    runner_factory(pipeline_config, *services).start()
    host, port = pipeline_config["WEB_SERVER_ADDRESS"].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as stalled:
        stalled.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                        b"Content-Length: 1000000\r\n\r\nJFIF")
        started = time.monotonic()
        # meanwhile everyone else is served: the stalled body holds no worker
        assert web.get("/health").status_code == 200
        answer = stalled.recv(4096)
        assert b"408" in answer.split(b"\r\n")[0] and b"request_timeout" in answer
        assert time.monotonic() - started < 10
