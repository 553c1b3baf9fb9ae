"""Reading uploads out of real werkzeug requests."""
import io

import pytest
from hypothesis import given, settings, strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from imagepipe.errors import BadRequest, PayloadTooLarge, UnsupportedFormat
from imagepipe.web.uploads import FORM_OVERHEAD, MAX_FORM_PARTS, read_upload


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


# -- multipart: python-multipart as the parser, werkzeug's as the reference -------

BOUNDARY = "bOuNdArY-7f3a"


def multipart_request(body, boundary=BOUNDARY, chunked=False):
    environ = EnvironBuilder(method="POST", path="/upload", data=body,
                             content_type="multipart/form-data; boundary=" + boundary).get_environ()
    if chunked:
        del environ["CONTENT_LENGTH"]
        environ["wsgi.input_terminated"] = True
    return Request(environ)


def encode_form(parts, boundary=BOUNDARY):
    """``parts``: [(name, filename or None, content bytes)] as a multipart body."""
    body = b""
    for name, filename, content in parts:
        disposition = 'form-data; name="{}"'.format(name)
        if filename is not None:
            disposition += '; filename="{}"'.format(filename)
        body += "--{}\r\nContent-Disposition: {}\r\n\r\n".format(boundary, disposition).encode()
        body += content + b"\r\n"
    return body + "--{}--\r\n".format(boundary).encode()


def werkzeug_reading(body, max_bytes):
    """What werkzeug's own form parser finds: (image bytes or None, fields) or the error type."""
    request = multipart_request(body)
    request.max_content_length = max_bytes + 64 * 1024
    try:
        files, form = request.files, request.form
    except Exception as exc:  # noqa: BLE001 -- any refusal is a refusal
        return type(exc)
    image = files.get("image")
    return (image.stream.read() if image is not None else None), {key: form.get(key) for key in form}


def our_reading(body, max_bytes):
    try:
        upload = read_upload(multipart_request(body), max_bytes)
    except (BadRequest, PayloadTooLarge) as exc:
        return type(exc)
    return upload.read(), upload.fields


part_names = st.sampled_from(["image", "callback_url", "focus", "other", "image"])
# what a client's encoder may put in a part: anything but the boundary it chose
part_contents = (st.binary(max_size=300) | st.sampled_from([
    b"", b"\r\n", b"--", b"\r\n--" + BOUNDARY.encode()[:-1], b"--bOuNdArY",
    b"\xff\xd8\xff\xe0 jpeg-ish \r\n\r\n", "é ünïcode".encode()])
).filter(lambda content: BOUNDARY.encode() not in content)
forms = st.lists(st.tuples(part_names, st.none() | st.sampled_from(["a.jpg", "b.png", ""]),
                           part_contents), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(forms)
def test_well_formed_forms_read_as_werkzeug_reads_them(parts):
    body = encode_form(parts)
    reference = werkzeug_reading(body, 10_000)
    ours = our_reading(body, 10_000)
    if isinstance(reference, tuple) and reference[0]:
        assert ours == reference
    else:  # no image part (or an empty one): refused
        assert ours is BadRequest


@settings(max_examples=300, deadline=None)
@given(forms, st.integers(min_value=0), st.binary(max_size=8) | st.just(b"--" + BOUNDARY.encode()))
def test_damaged_forms_are_refused_cleanly_or_read_as_bytes_they_hold(parts, cut, garbage):
    # damage can make a form ambiguous (a boundary inside a part): a clean 4xx,
    # or an image that is bytes of the body within the limit -- never a crash
    body = encode_form(parts)
    cut %= len(body) + 1
    damaged = body[:cut] + garbage + body[cut + len(garbage):]
    ours = our_reading(damaged, 100)
    if isinstance(ours, tuple):
        image, fields = ours
        assert 0 < len(image) <= 100 and image in damaged
        assert all(isinstance(value, str) for value in fields.values())
    else:
        assert ours in (BadRequest, PayloadTooLarge)


def test_a_form_read_in_chunks_over_a_chunked_body():
    image = bytes(range(256)) * 1000  # spans many reads
    body = encode_form([("focus", None, b"auto"), ("image", "a.jpg", image)])
    upload = read_upload(multipart_request(body, chunked=True), len(image))
    assert (upload.read(), upload.fields) == (image, {"focus": "auto"})


def test_a_form_that_ends_before_its_closing_boundary_is_refused():
    body = encode_form([("image", "a.jpg", b"PIXELS")])
    with pytest.raises(BadRequest, match="closing boundary"):
        read_upload(multipart_request(body[:-len(BOUNDARY) - 8]), 100)


def test_too_many_parts_are_refused():
    body = encode_form([("image", "a.jpg", b"PIXELS")] + [("x", None, b"1")] * MAX_FORM_PARTS)
    with pytest.raises(BadRequest, match="parts"):
        read_upload(multipart_request(body), 100)


def test_large_fields_are_refused_while_streaming():
    body = encode_form([("image", "a.jpg", b"PIXELS"), ("focus", None, b"x" * (FORM_OVERHEAD + 1))])
    with pytest.raises(PayloadTooLarge, match="fields"):
        read_upload(multipart_request(body), 10 * FORM_OVERHEAD)


@pytest.mark.parametrize("boundary", ["", "x" * 71])
def test_a_missing_or_overlong_boundary_is_refused(boundary):
    request = multipart_request(encode_form([("image", "a.jpg", b"PIXELS")], "b"), boundary=boundary)
    with pytest.raises(BadRequest, match="malformed multipart"):
        read_upload(request, 100)


@pytest.mark.parametrize("headers", [
    ["X-Extra-{}: 1".format(number) for number in range(9)],  # python-multipart allows 8
    ["X-Long: " + "a" * 5000],
])
def test_parts_with_too_many_or_too_long_headers_are_refused(headers):
    body = ("--{0}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n{1}\r\n\r\n"
            "PIXELS\r\n--{0}--\r\n").format(BOUNDARY, "\r\n".join(headers)).encode()
    with pytest.raises(BadRequest, match="malformed multipart"):
        read_upload(multipart_request(body), 100)
