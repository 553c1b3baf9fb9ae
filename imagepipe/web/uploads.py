"""Reading an upload out of an HTTP request, within a size limit.

Two shapes are accepted: multipart form data with the file in field ``image``
(what browsers and ``curl -F image=@photo.jpg`` send) or the raw bytes as the
body with an ``image/*`` Content-Type.  The limit is enforced before reading
(Content-Length) and while reading (chunked bodies), so an oversized body is
never buffered whole.
"""
import io

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from imagepipe.errors import BadRequest, PayloadTooLarge, UnsupportedFormat

UPLOAD_FIELD = "image"
# Room for multipart boundaries, part headers and small form fields.
FORM_OVERHEAD = 64 * 1024
_CHUNK = 64 * 1024


def read_upload(request, max_bytes):
    """Return ``(image bytes, form fields)`` from a werkzeug request."""
    mimetype = request.mimetype or ""
    framing = FORM_OVERHEAD if mimetype == "multipart/form-data" else 0
    if request.content_length is not None and request.content_length > max_bytes + framing:
        raise _too_large(max_bytes)
    if mimetype == "multipart/form-data":
        return _read_multipart(request, max_bytes)
    if mimetype.startswith("image/") or mimetype == "application/octet-stream":
        return _read_raw_body(request, max_bytes), {}
    if not mimetype:
        raise BadRequest(
            "send the image as multipart field 'image' or as the request body "
            "with an image/* Content-Type")
    raise UnsupportedFormat(
        "Content-Type {} is not accepted; send multipart/form-data with field "
        "'image' or an image/* body".format(mimetype))


class _InMemoryFormDataParser(FormDataParser):
    """werkzeug's form parser, keeping file parts in memory.

    The image is held in memory whole anyway (it travels to storage as one
    message, and the size limit bounds it), so werkzeug's default of spooling
    parts over 500 KB to a temporary file only adds a disk write and read
    per upload.
    """

    def __init__(self, stream_factory=None, *args, **kwargs):
        super().__init__(_memory_stream, *args, **kwargs)


def _memory_stream(total_content_length, content_type, filename=None, content_length=None):
    return io.BytesIO()


def _read_multipart(request, max_bytes):
    # werkzeug's form parser honours max_content_length even for chunked bodies
    request.max_content_length = max_bytes + FORM_OVERHEAD
    request.form_data_parser_class = _InMemoryFormDataParser
    try:
        files = request.files
        form = request.form
    except RequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    except ValueError as exc:
        raise BadRequest("malformed multipart body: {}".format(exc)) from None
    upload = files.get(UPLOAD_FIELD)
    if upload is None:
        raise BadRequest("multipart field 'image' is missing")
    data = upload.stream.getvalue()  # no copy: BytesIO hands over its buffer
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    if not data:
        raise BadRequest("multipart field 'image' is empty")
    return data, {key: form.get(key) for key in form}


def _read_raw_body(request, max_bytes):
    data = _read_limited(request.stream, max_bytes)
    if not data:
        raise BadRequest("the request body is empty")
    return data


def _read_limited(stream, max_bytes):
    chunks, size = [], 0
    while True:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)


def _too_large(max_bytes):
    return PayloadTooLarge(
        "the upload is larger than the limit of {} bytes".format(max_bytes))
