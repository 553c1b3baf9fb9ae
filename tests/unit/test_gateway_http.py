"""The gateway's HTTP behaviour without RabbitMQ: nameko-examples' interface-test style.

A real gateway container serves real HTTP; every dependency that would talk
to the broker is replaced (``replace_dependencies``) and the broadcast event
subscription is left out (``restrict_entrypoints``).  nameko leaves the
replaced ones' shared AMQP extensions (reply listener, queue consumer) in
the container, where they would wait for a broker at start; only the web
server is kept, so these run in tests/unit with no broker at all.
"""
import pytest
from nameko.testing.services import replace_dependencies, restrict_entrypoints
from nameko.web.server import WebServer

from harness.processes import free_port
from imagepipe.errors import NotFound, Unavailable
from services.gateway import GatewayService
from tests.helpers import WebSession, load_config, make_jpeg

IMAGE_ID = "ab" * 16
RECORD = {
    "id": IMAGE_ID, "status": "done", "error": None, "attempts": 1,
    "original": {"format": "JPEG", "mime_type": "image/jpeg", "width": 64, "height": 48,
                 "frames": 1, "bytes": 900, "sha256": "c" * 64},
    "variants": {"thumb": {"format": "webp", "mime_type": "image/webp", "width": 32,
                           "height": 24, "bytes": 3, "sha256": "d" * 64}},
    "created_at": "t0", "updated_at": "t1", "callback_url": None,
}
HTTP_ENTRYPOINTS = ["upload", "list_images", "image_status", "image_bytes", "health",
                    "web_page", "web_static", "metrics_page", "openapi"]


@pytest.fixture
def gateway(container_factory, tmp_path):
    config = load_config()
    config["STORAGE_ROOT"] = str(tmp_path)
    config.pop("LOGGING", None)
    config["WEB_SERVER_ADDRESS"] = "127.0.0.1:{}".format(free_port())
    config["AMQP_URI"] = "amqp://guest:guest@127.0.0.1:1/"  # nothing may need it
    container = container_factory(GatewayService, config)
    storage, dispatch, _callback_urls, blobs = replace_dependencies(
        container, "storage", "dispatch", "callback_urls", "blobs")
    blobs.direct_for.return_value = None  # bytes over RPC: nothing else is there to reach
    restrict_entrypoints(container, *HTTP_ENTRYPOINTS)
    for extension in list(container.subextensions):
        if not isinstance(extension, WebServer):
            container.subextensions.remove(extension)
    container.start()
    with WebSession("http://" + config["WEB_SERVER_ADDRESS"]) as web:
        yield web, storage, dispatch


def test_an_upload_is_stored_announced_and_answered_202(gateway):
    web, storage, dispatch = gateway
    storage.put_original.return_value = (dict(RECORD, status="pending"), True)
    response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 48))})
    assert response.status_code == 202, response.text
    assert response.json()["id"] == IMAGE_ID
    assert response.headers["Location"] == "/images/" + IMAGE_ID
    data, info, callback_url, tenant = storage.put_original.call_args.args
    assert (info["format"], info["width"], info["height"], callback_url, tenant) == (
        "JPEG", 64, 48, None, None)
    dispatch.assert_called_once_with("image_uploaded", {"id": IMAGE_ID})


def test_a_reupload_of_a_finished_image_dispatches_nothing(gateway):
    web, storage, dispatch = gateway
    storage.put_original.return_value = (RECORD, False)
    response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 48))})
    assert response.status_code == 202 and response.json()["status"] == "done"
    dispatch.assert_not_called()


def test_a_file_that_is_no_image_never_reaches_storage(gateway):
    web, storage, dispatch = gateway
    response = web.post("/upload", data=b"%PDF-1.7 not an image",
                        headers={"Content-Type": "image/png"})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_format"
    storage.put_original.assert_not_called()


def test_storage_errors_arrive_as_their_status_codes(gateway):
    web, storage, _ = gateway
    storage.get_image.side_effect = NotFound("no image with id 'x'")
    response = web.get("/images/" + IMAGE_ID)
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    storage.get_image.side_effect = Unavailable("storage.get_image did not answer within 5 s")
    response = web.get("/images/" + IMAGE_ID)
    assert (response.status_code, response.json()["error"]) == (503, "service_unavailable")
    assert response.headers["Retry-After"] == "5"


def test_a_rendition_revalidates_without_fetching_its_bytes(gateway):
    web, storage, _ = gateway
    storage.get_image.return_value = RECORD
    storage.get_variant.return_value = (b"abc", RECORD["variants"]["thumb"])
    first = web.get("/images/{}/thumb".format(IMAGE_ID))
    assert (first.status_code, first.content) == (200, b"abc")
    assert first.headers["Content-Type"] == "image/webp"
    again = web.get("/images/{}/thumb".format(IMAGE_ID), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert storage.get_variant.call_count == 1


@pytest.mark.parametrize("path, status, code", [
    ("/images?limit=0", 400, "bad_request"),
    ("/images/not-an-id", 404, "not_found"),
    ("/nowhere", 404, "not_found"),
])
def test_client_errors_are_json(gateway, path, status, code):
    web, _, _ = gateway
    response = web.get(path)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == code
