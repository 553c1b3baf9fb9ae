"""Property test of the HTTP layer against the running services.

Random methods, paths, headers and bodies: every answer must be a JSON
object with the documented shape, never a 5xx other than 503, never HTML,
and the gateway must keep serving.
"""
import json
import socket
import string

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import make_jpeg, wait_for_status

SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-_.%~", min_size=0, max_size=40)
PATHS = st.one_of(
    st.sampled_from(["/upload", "/health", "/images/", "/images/" + "a" * 32,
                     "/images/" + "a" * 32 + "/thumb", "/images/" + "a" * 32 + "/original"]),
    st.builds(lambda parts: "/" + "/".join(parts), st.lists(SEGMENT, max_size=4)),
    st.builds(lambda segment: "/images/" + segment, SEGMENT),
    st.builds(lambda a, b: "/images/{}/{}".format(a, b), SEGMENT, SEGMENT),
)
CONTENT_TYPES = st.sampled_from([
    None, "image/jpeg", "image/png", "application/octet-stream", "text/plain",
    "multipart/form-data", "multipart/form-data; boundary=xyz", "application/json", "image/",
])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       path=PATHS, content_type=CONTENT_TYPES, body=st.binary(max_size=2048))
def test_any_request_gets_a_json_answer(pipeline, web, method, path, content_type, body):
    headers = {"Content-Type": content_type} if content_type else {}
    response = web.request(method, path, data=body, headers=headers)
    assert response.status_code < 500 or response.status_code == 503, (method, path, response.text)
    if method == "HEAD":
        return
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == "application/json", response.text
        error = response.json()
        assert set(error) == {"error", "message"} and isinstance(error["message"], str)


def test_gateway_still_serves_after_fuzzing(pipeline, web):
    test_any_request_gets_a_json_answer(pipeline, web)
    response = web.post("/upload", files={"image": ("ok.jpg", make_jpeg(200, 100))})
    assert wait_for_status(web, response.json()["id"])["status"] == "done"


MALFORMED_REQUESTS = {
    "header line too long": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "too many header bytes": b"GET /health HTTP/1.1\r\nHost: x\r\n"
                             + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 1000) for i in range(80)) + b"\r\n",
    "negative content length": b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "content length and chunked": b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\nabc",
    "garbage request line": b"\x00\xff not http at all\r\n\r\n",
    "unknown HTTP version": b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
}


def raw_exchange(address, request):
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("request_bytes", MALFORMED_REQUESTS.values(), ids=list(MALFORMED_REQUESTS))
def test_requests_refused_before_routing_get_json_too(pipeline, pipeline_config, web, request_bytes):
    answer = raw_exchange(pipeline_config["WEB_SERVER_ADDRESS"], request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = {name.lower(): value.strip() for name, value in
               (line.split(":", 1) for line in header_lines)}
    assert 400 <= status < 500 or status == 505, answer[:300]
    assert headers["content-type"] == "application/json", answer[:300]
    error = json.loads(body)
    assert set(error) == {"error", "message"} and error["error"] in (
        "bad_request", "uri_too_long", "http_version_not_supported")
    assert web.get("/health").status_code == 200
