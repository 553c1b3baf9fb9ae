"""Reading uploads out of real werkzeug requests."""
import io

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from imagepipe.errors import BadRequest, PayloadTooLarge, UnsupportedFormat
from imagepipe.web.uploads import read_upload


def request_for(**kwargs):
    return Request(EnvironBuilder(method="POST", path="/upload", **kwargs).get_environ())


def test_multipart_field_image():
    request = request_for(data={"image": (io.BytesIO(b"PIXELS"), "a.jpg"), "callback_url": "x"})
    upload = read_upload(request, 100)
    assert (upload.read(), upload.size) == (b"PIXELS", 6)
    assert upload.fields == {"callback_url": "x"}


def test_raw_body_with_image_content_type():
    request = request_for(data=b"RAW", content_type="image/png")
    upload = read_upload(request, 100)
    assert (upload.read(), upload.fields) == (b"RAW", {})


def test_chunked_raw_body_is_read():
    environ = EnvironBuilder(method="POST", data=b"CHUNKED", content_type="image/png",
                             headers={"Transfer-Encoding": "chunked"}).get_environ()
    del environ["CONTENT_LENGTH"]
    assert read_upload(Request(environ), 100).read() == b"CHUNKED"


def test_a_large_upload_spools_to_disk_not_memory():
    upload = read_upload(request_for(data=b"x" * 5000, content_type="image/png"), 10_000, spool_bytes=1000)
    assert upload.file._rolled and upload.read() == b"x" * 5000
    multipart = read_upload(request_for(data={"image": (io.BytesIO(b"y" * 5000), "a.jpg")}),
                            10_000, spool_bytes=1000)
    assert multipart.file._rolled and multipart.read() == b"y" * 5000


def test_declared_length_over_limit_is_rejected_before_reading():
    request = request_for(data=b"x" * 101, content_type="image/png")
    with pytest.raises(PayloadTooLarge):
        read_upload(request, 100)


def test_body_over_limit_without_length_is_rejected_while_reading():
    environ = EnvironBuilder(method="POST", data=b"x" * 500, content_type="image/png").get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True  # a chunked body: length unknown
    with pytest.raises(PayloadTooLarge):
        read_upload(Request(environ), 100)


def test_multipart_file_over_limit():
    request = request_for(data={"image": (io.BytesIO(b"x" * 5000), "a.jpg")})
    with pytest.raises(PayloadTooLarge):
        read_upload(request, 1000)


@pytest.mark.parametrize("kwargs, error", [
    ({"data": {"other": (io.BytesIO(b"x"), "a.jpg")}}, BadRequest),
    ({"data": {"image": (io.BytesIO(b""), "a.jpg")}}, BadRequest),
    ({"data": b"", "content_type": "image/jpeg"}, BadRequest),
    ({"data": b"{}", "content_type": "application/json"}, UnsupportedFormat),
    ({"data": b"abc"}, BadRequest),
])
def test_malformed_uploads(kwargs, error):
    with pytest.raises(error):
        read_upload(request_for(**kwargs), 100)
