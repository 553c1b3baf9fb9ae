"""The whole flow over real HTTP, real RabbitMQ (own vhost) and real Pillow."""
import pytest

from tests.helpers import decode, make_jpeg, make_png, post_upload, wait_for_status


@pytest.mark.parametrize("job_queue_type", ["classic", "quorum"])
def test_upload_is_accepted_processed_and_downloadable(pipeline, web):
    data = make_jpeg(2000, 1500)
    response = post_upload(web, data)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["links"]["self"] == "/images/{}".format(body["id"])
    assert response.headers["Location"] == body["links"]["self"]

    status = wait_for_status(web, body["id"])
    assert status["status"] == "done", status
    assert status["error"] is None
    assert status["original"]["format"] == "JPEG"
    assert (status["original"]["width"], status["original"]["height"]) == (2000, 1500)
    assert status["original"]["bytes"] == len(data)
    assert set(status["variants"]) == {"thumb", "medium"}

    expected = {"thumb": (256, 192), "medium": (1024, 768)}
    for preset, variant in status["variants"].items():
        download = web.get(variant["url"])
        assert download.status_code == 200
        assert download.headers["Content-Type"] == "image/webp"
        assert download.headers["X-Content-Type-Options"] == "nosniff"
        assert "max-age=31536000" in download.headers["Cache-Control"]
        image = decode(download.content)
        assert image.format == "WEBP"
        assert image.size == expected[preset] == (variant["width"], variant["height"])
        assert len(download.content) == variant["bytes"]
        # ETag revalidation answers 304 without the body
        again = web.get(variant["url"], headers={"If-None-Match": download.headers["ETag"]})
        assert again.status_code == 304 and again.content == b""

    original = web.get(status["original"]["url"])
    assert original.status_code == 200
    assert original.content == data
    assert original.headers["Content-Type"] == "image/jpeg"
    assert "immutable" in original.headers["Cache-Control"]


def test_raw_body_upload(pipeline, web):
    response = web.post("/upload", data=make_png(), headers={"Content-Type": "image/png"})
    assert response.status_code == 202, response.text
    status = wait_for_status(web, response.json()["id"])
    assert status["status"] == "done"
    thumb = decode(web.get(status["variants"]["thumb"]["url"]).content)
    assert thumb.mode == "RGBA"  # transparency survives
    assert thumb.size == (256, 171)


def test_same_bytes_are_stored_once(pipeline, web, pipeline_config):
    from pathlib import Path

    data = make_jpeg(300, 300, color=(1, 2, 3))
    first = post_upload(web, data).json()
    second = post_upload(web, data, filename="copy.jpg").json()
    assert first["id"] == second["id"]
    wait_for_status(web, first["id"])
    originals = list((Path(pipeline_config["STORAGE_ROOT"]) / "originals").rglob("*"))
    assert [path.name for path in originals if path.is_file()] == [first["id"]]


def test_upload_answers_202_for_an_already_done_image_without_reprocessing(pipeline, web):
    data = make_jpeg(400, 300, color=(9, 9, 9))
    image_id = post_upload(web, data).json()["id"]
    done = wait_for_status(web, image_id)
    again = post_upload(web, data)
    assert again.status_code == 202
    assert again.json()["status"] == "done"
    assert web.get("/images/" + image_id).json()["updated_at"] == done["updated_at"]


@pytest.mark.parametrize("path, status, code", [
    ("/images/0123456789abcdef0123456789abcdef", 404, "not_found"),
    ("/images/not-an-id", 404, "not_found"),
    ("/images/..%2F..%2Fetc%2Fpasswd", 404, "not_found"),
    ("/images/0123456789abcdef0123456789abcdef/thumb", 404, "not_found"),
    ("/images/0123456789abcdef0123456789abcdef/..%2Fcatalog.sqlite3", 404, "not_found"),
    ("/no/such/path", 404, "not_found"),
])
def test_not_found_is_json(pipeline, web, path, status, code):
    response = web.get(path)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == code
    assert response.json()["message"]


def test_unknown_preset_of_a_real_image_is_404(pipeline, web):
    image_id = post_upload(web, make_jpeg(100, 100)).json()["id"]
    wait_for_status(web, image_id)
    for name in ("huge", "..", "THUMB"):  # "events" is the live status stream
        response = web.get("/images/{}/{}".format(image_id, name))
        assert response.status_code == 404, name
        assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("kwargs, status, code", [
    ({"files": {"image": ("notes.txt", b"hello, I am not an image")}}, 415, "unsupported_format"),
    ({"files": {"image": ("empty.jpg", b"")}}, 400, "bad_request"),
    ({"files": {"picture": ("photo.jpg", b"\xff\xd8\xff")}}, 400, "bad_request"),
    ({"data": b"", "headers": {"Content-Type": "image/jpeg"}}, 400, "bad_request"),
    ({"data": b"{}", "headers": {"Content-Type": "application/json"}}, 415, "unsupported_format"),
    ({"data": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
     400, "bad_request"),
])
def test_bad_uploads_get_json_errors(pipeline, web, kwargs, status, code):
    response = web.post("/upload", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["message"]


def test_wrong_method_is_405_json(pipeline, web):
    response = web.put("/upload", data=b"x")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_oversized_upload_is_413(pipeline, web, pipeline_config):
    too_big = b"\xff\xd8\xff" + b"\0" * (pipeline_config["MAX_UPLOAD_BYTES"] + 10)
    response = web.post("/upload", data=too_big, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    response = post_upload(web, too_big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_corrupt_image_ends_failed_with_a_reason(pipeline, web):
    data = make_jpeg(800, 600)
    truncated = data[: len(data) // 3]
    response = post_upload(web, truncated)
    assert response.status_code == 202, response.text
    status = wait_for_status(web, response.json()["id"])
    assert status["status"] == "failed"
    assert "corrupt" in status["error"] or "truncated" in status["error"]
    assert status["variants"] == {}
    # the imaging worker survives and takes the next job
    ok = post_upload(web, make_jpeg(64, 64)).json()
    assert wait_for_status(web, ok["id"])["status"] == "done"


def test_health(pipeline, web):
    response = web.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_upload_before_any_imaging_process_is_not_lost(runner_factory, pipeline_config, web):
    """The gateway declares the job queue, so nothing is dropped while imaging is down."""
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService

    front = runner_factory(pipeline_config, GatewayService, StorageService)
    front.start()
    image_id = post_upload(web, make_jpeg(500, 400)).json()["id"]
    assert web.get("/images/" + image_id).json()["status"] == "pending"

    workers = runner_factory(pipeline_config, ImagingService)
    workers.start()
    assert wait_for_status(web, image_id)["status"] == "done"


def test_storage_down_means_503_with_retry_after(runner_factory, pipeline_config, web):
    from services.gateway import GatewayService
    from services.storage import StorageService

    # storage's queue exists but nobody consumes it: a plain RpcProxy would hang
    storage = runner_factory(pipeline_config, StorageService)
    storage.start()
    storage.stop()
    pipeline_config["RPC_TIMEOUT"] = 1
    gateway = runner_factory(pipeline_config, GatewayService)
    gateway.start()
    response = post_upload(web, make_jpeg(50, 50))
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["Retry-After"]
    assert response.elapsed.total_seconds() < 5


def test_api_keys_when_configured(runner_factory, pipeline_config, web):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService

    pipeline_config["API_KEYS"] = "first-key, second-key"
    runner = runner_factory(pipeline_config, GatewayService, ImagingService, StorageService)
    runner.start()

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic first-key"}):
        response = post_upload(web, make_jpeg(64, 64), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert web.get("/images/" + "0" * 32).status_code == 401
    assert web.get("/health").status_code == 200  # for load balancers and probes

    response = post_upload(web, make_jpeg(64, 64), headers={"Authorization": "Bearer second-key"})
    assert response.status_code == 202
    status = web.get(response.headers["Location"], headers={"Authorization": "Bearer second-key"})
    assert status.status_code == 200
    # each key is a tenant: another key's image does not exist for it (tests/integration/test_tenants.py)
    other = web.get(response.headers["Location"], headers={"Authorization": "Bearer first-key"})
    assert (other.status_code, other.json()["error"]) == (404, "not_found")


def test_pipeline_on_postgresql(runner_factory, pipeline_config, web):
    """The same services with the catalog in PostgreSQL: configuration only."""
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService
    from tests.helpers import ScratchDatabase

    with ScratchDatabase() as database:
        pipeline_config["STORAGE_DB"] = database.url
        runner = runner_factory(pipeline_config, GatewayService, ImagingService, StorageService)
        runner.start()
        response = post_upload(web, make_jpeg(1200, 900))
        assert response.status_code == 202
        status = wait_for_status(web, response.json()["id"])
        assert status["status"] == "done"
        assert decode(web.get(status["variants"]["medium"]["url"]).content).size == (1024, 768)
        runner.stop()


def test_recent_images_newest_first_paginated(pipeline, web):
    ids = [post_upload(web, make_jpeg(50 + index, 40)).json()["id"] for index in range(5)]
    seen, url = [], "/images?limit=2"
    while url:
        response = web.get(url)
        assert response.status_code == 200
        body = response.json()
        assert len(body["images"]) <= 2
        seen += [image["id"] for image in body["images"]]
        url = body["next"]
    assert seen == list(reversed(ids))
    assert web.get("/images?limit=0").status_code == 400
    assert web.get("/images?cursor=forged").json()["error"] == "bad_request"
