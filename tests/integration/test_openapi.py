"""Real responses of the running pipeline validate against imagepipe/openapi.yaml.

``openapi-core`` checks each response's status code, Content-Type, required
headers and body schema for the operation of its request; any answer the
spec does not describe fails the test.  The schemathesis run
(tests/integration/test_openapi_fuzz.py) complements this with generated
requests.
"""
import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_spec_validator import validate as validate_spec

from imagepipe.web.openapi import openapi_spec
from tests.helpers import make_jpeg, make_png, wait_for_status

MAX_UPLOAD_BYTES = 300_000


@pytest.fixture(scope="module")
def openapi():
    return OpenAPI.from_dict(openapi_spec())


@pytest.fixture
def pipeline_config(pipeline_config):
    pipeline_config["MAX_UPLOAD_BYTES"] = MAX_UPLOAD_BYTES
    return pipeline_config


def conforms(openapi, response, status):
    """Assert ``response`` has ``status`` and is what the spec says it is."""
    assert response.status_code == status, response.text[:500]
    openapi.validate_response(RequestsOpenAPIRequest(response.request),
                              RequestsOpenAPIResponse(response))
    return response


def error_code(response):
    return response.json()["error"]


def start(runner_factory, config, *service_names):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService

    classes = {"gateway": GatewayService, "imaging": ImagingService, "storage": StorageService}
    runner = runner_factory(config, *[classes[name] for name in service_names])
    runner.start()
    return runner


def test_the_spec_is_valid_openapi_and_is_served_as_is(pipeline, web, openapi):
    validate_spec(openapi_spec())
    served = conforms(openapi, web.get("/openapi.json"), 200).json()
    assert served == openapi_spec()
    assert served["paths"].keys() >= {"/upload", "/images", "/images/{image_id}",
                                      "/images/{image_id}/{rendition}", "/health", "/openapi.json",
                                      "/", "/images/{image_id}/events", "/metrics"}


def test_upload_status_list_and_downloads_conform(pipeline, web, openapi):
    multipart = conforms(openapi, web.post("/upload", files={"image": ("a.jpg", make_jpeg(900, 600))}), 202)
    raw = conforms(openapi, web.post("/upload", data=make_png(200, 100),
                                     headers={"Content-Type": "image/png"}), 202)
    for accepted in (multipart, raw):
        image_id = accepted.json()["id"]
        wait_for_status(web, image_id)
        status = conforms(openapi, web.get("/images/" + image_id), 200).json()
        assert status["status"] == "done"
        for rendition in ("original", "thumb", "medium", "thumb.webp"):
            download = conforms(openapi, web.get("/images/{}/{}".format(image_id, rendition)), 200)
            conforms(openapi, web.get("/images/{}/{}".format(image_id, rendition),
                                      headers={"If-None-Match": download.headers["ETag"]}), 304)
    first_page = conforms(openapi, web.get("/images?limit=1"), 200).json()
    assert len(first_page["images"]) == 1 and first_page["next"]
    last_page = conforms(openapi, web.get(first_page["next"]), 200).json()
    assert last_page["next"] is None
    assert conforms(openapi, web.get("/health"), 200).json()["status"] == "ok"
    metrics = conforms(openapi, web.get("/metrics"), 200)
    assert "imagepipe_uploads_accepted_total" in metrics.text  # one registry per process: no exact count
    openmetrics = conforms(openapi, web.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}), 200)
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")


def test_web_page_and_event_stream_conform(pipeline, web, openapi):
    page = conforms(openapi, web.get("/"), 200)
    assert page.headers["Content-Type"].startswith("text/html")
    conforms(openapi, web.get("/", headers={"If-None-Match": page.headers["ETag"]}), 304)
    for name in ("app.js", "style.css", "favicon.svg"):
        conforms(openapi, web.get("/static/" + name), 200)
    assert error_code(conforms(openapi, web.get("/static/nope.js"), 404)) == "not_found"
    image_id = web.post("/upload", files={"image": ("a.jpg", make_jpeg(120, 90))}).json()["id"]
    wait_for_status(web, image_id)
    stream = conforms(openapi, web.get("/images/{}/events".format(image_id)), 200)
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.text.startswith("event: status\ndata: {")  # one event for a finished image
    assert error_code(conforms(openapi, web.get("/images/{}/events".format("0" * 32)), 404)) == "not_found"


def test_pending_status_conforms(runner_factory, pipeline_config, web, openapi):
    start(runner_factory, pipeline_config, "gateway", "storage")  # no imaging: stays pending
    accepted = conforms(openapi, web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64))}), 202)
    status = conforms(openapi, web.get("/images/" + accepted.json()["id"]), 200).json()
    assert status["status"] == "pending" and status["variants"] == {}
    listed = conforms(openapi, web.get("/images"), 200).json()
    assert [image["status"] for image in listed["images"]] == ["pending"]


@pytest.mark.parametrize("request_kwargs, status, code", [
    ({"files": {"other": ("a.jpg", b"x")}}, 400, "bad_request"),
    ({"data": b"", "headers": {"Content-Type": "image/png"}}, 400, "bad_request"),
    ({"files": {"image": ("a.jpg", b"x")}, "data": {"callback_url": "no url"}}, 400, "invalid_callback_url"),
    ({"files": {"image": ("a.jpg", b"x")}, "data": {"callback_url": "http://127.0.0.1/"}},
     400, "callback_url_forbidden"),
    ({"files": {"image": ("a.jpg", b"x")}, "data": {"focus": "1.5,0"}}, 400, "invalid_focus"),
    ({"data": b"\0" * (MAX_UPLOAD_BYTES + 1), "headers": {"Content-Type": "image/jpeg"}},
     413, "payload_too_large"),
    ({"data": b"plain text, not an image", "headers": {"Content-Type": "image/png"}},
     415, "unsupported_format"),
    ({"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_format"),
    ({"data": b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "headers": {"Content-Type": "image/png"}},
     422, "invalid_image"),
])
def test_upload_errors_conform(pipeline, web, openapi, request_kwargs, status, code):
    response = conforms(openapi, web.post("/upload", **request_kwargs), status)
    assert error_code(response) == code


def test_read_errors_conform(pipeline, web, openapi):
    for path in ("/images/" + "0" * 32, "/images/not-an-id", "/images/" + "0" * 32 + "/thumb"):
        assert error_code(conforms(openapi, web.get(path), 404)) == "not_found"
    image_id = web.post("/upload", files={"image": ("a.jpg", make_jpeg(80, 80))}).json()["id"]
    wait_for_status(web, image_id)
    assert error_code(conforms(openapi, web.get("/images/{}/nosuchpreset".format(image_id)), 404)) == "not_found"
    for query in ("limit=0", "limit=101", "limit=x", "cursor=forged"):
        assert error_code(conforms(openapi, web.get("/images?" + query), 400)) == "bad_request"
    # eventlet refuses request lines over 8 KiB before routing; still JSON
    too_long = conforms(openapi, web.get("/images?cursor=" + "x" * 9000), 414)
    assert error_code(too_long) == "uri_too_long"
    assert conforms(openapi, web.get("/health"), 200)  # and the server keeps serving


def test_unauthorized_answers_conform(runner_factory, pipeline_config, web, openapi):
    pipeline_config["API_KEYS"] = "key-one,key-two"
    start(runner_factory, pipeline_config, "gateway", "storage")
    for method, path in (("POST", "/upload"), ("GET", "/images"), ("GET", "/images/" + "0" * 32),
                         ("GET", "/images/{}/thumb".format("0" * 32)), ("GET", "/metrics")):
        response = conforms(openapi, web.request(method, path), 401)
        assert error_code(response) == "unauthorized"
    # the public operations need no key
    conforms(openapi, web.get("/health"), 200)
    conforms(openapi, web.get("/openapi.json"), 200)
    authorized = web.get("/images", headers={"Authorization": "Bearer key-two"})
    assert conforms(openapi, authorized, 200).json() == {"images": [], "next": None}


def test_503_when_storage_is_down_conforms(runner_factory, pipeline_config, web, openapi):
    pipeline_config["RPC_TIMEOUT"] = 1
    start(runner_factory, pipeline_config, "gateway")  # no storage process
    response = conforms(openapi, web.get("/images/" + "0" * 32), 503)
    assert error_code(response) == "service_unavailable"
    assert error_code(conforms(openapi, web.get("/images"), 503)) == "service_unavailable"
