"""Property test of the HTTP layer against the running services.

Random methods, paths, headers and bodies: every answer must be a JSON
object with the documented shape, never a 5xx other than 503, never HTML,
and the gateway must keep serving.
"""
import string

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
