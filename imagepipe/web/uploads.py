"""Reading an upload out of an HTTP request, within a size limit, into a spool.

Two shapes are accepted: multipart form data with the file in field ``image``
(what browsers and ``curl -F image=@photo.jpg`` send) or the raw bytes as the
body with an ``image/*`` Content-Type, with a Content-Length or chunked.  The
limit is enforced before reading (Content-Length) and while reading (chunked
bodies), so an oversized body is never buffered whole.  The image lands in a
spool -- memory up to a threshold, then a temporary file -- so a slow or
large upload costs neither a worker nor unbounded memory.
"""
import shutil
from dataclasses import dataclass, field

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from imagepipe.errors import BadRequest, PayloadTooLarge, UnsupportedFormat
from imagepipe.web.limits import spool

UPLOAD_FIELD = "image"
# Room for multipart boundaries, part headers and small form fields.
FORM_OVERHEAD = 64 * 1024
_CHUNK = 64 * 1024


@dataclass
class Upload:
    """The uploaded image (a spooled file at position 0), its size, and the other form fields."""

    file: object
    size: int
    fields: dict = field(default_factory=dict)

    def read(self):
        """The whole image as bytes (for the paths that need it in memory)."""
        self.file.seek(0)
        data = self.file.read()
        self.file.seek(0)
        return data

    def close(self):
        self.file.close()


def read_upload(request, max_bytes, spool_bytes=4 * 1024 * 1024):
    """Return the ``Upload`` of a werkzeug request; errors are ``PipelineError``s (4xx)."""
    mimetype = request.mimetype or ""
    framing = FORM_OVERHEAD if mimetype == "multipart/form-data" else 0
    if request.content_length is not None and request.content_length > max_bytes + framing:
        raise _too_large(max_bytes)
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        # the server decodes chunked bodies; werkzeug reads no body of
        # unknown length unless told the input ends by itself
        request.environ["wsgi.input_terminated"] = True
    if mimetype == "multipart/form-data":
        return _read_multipart(request, max_bytes, spool_bytes)
    if mimetype.startswith("image/") or mimetype == "application/octet-stream":
        return _read_raw_body(request, max_bytes, spool_bytes)
    if not mimetype:
        raise BadRequest(
            "send the image as multipart field 'image' or as the request body "
            "with an image/* Content-Type")
    raise UnsupportedFormat(
        "Content-Type {} is not accepted; send multipart/form-data with field "
        "'image' or an image/* body".format(mimetype))


def _spooling_parser(spool_bytes):
    """werkzeug's form parser, putting file parts into spools of ``spool_bytes`` in memory."""

    def stream_factory(total_content_length, content_type, filename=None, content_length=None):
        return spool(spool_bytes)

    class SpoolingFormDataParser(FormDataParser):
        def __init__(self, _default_factory=None, *args, **kwargs):
            kwargs.pop("stream_factory", None)
            super().__init__(stream_factory, *args, **kwargs)

    return SpoolingFormDataParser


def _read_multipart(request, max_bytes, spool_bytes):
    # werkzeug's form parser honours max_content_length even for chunked bodies
    request.max_content_length = max_bytes + FORM_OVERHEAD
    request.form_data_parser_class = _spooling_parser(spool_bytes)
    try:
        files = request.files
        form = request.form
    except RequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    except ValueError as exc:
        raise BadRequest("malformed multipart body: {}".format(exc)) from None
    for name, part in files.items(multi=True):
        if name != UPLOAD_FIELD:
            part.close()
    part = files.get(UPLOAD_FIELD)
    if part is None:
        raise BadRequest("multipart field 'image' is missing")
    image = part.stream
    size = image.seek(0, 2)
    image.seek(0)
    if size > max_bytes:
        image.close()
        raise _too_large(max_bytes)
    if not size:
        image.close()
        raise BadRequest("multipart field 'image' is empty")
    return Upload(image, size, {key: form.get(key) for key in form})


def _read_raw_body(request, max_bytes, spool_bytes):
    image = spool(spool_bytes)
    try:
        size = _copy_limited(request.stream, image, max_bytes)
    except BaseException:
        image.close()
        raise
    if not size:
        image.close()
        raise BadRequest("the request body is empty")
    image.seek(0)
    return Upload(image, size, {})


def _copy_limited(stream, target, max_bytes):
    size = 0
    while True:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return size
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        target.write(chunk)


def _too_large(max_bytes):
    return PayloadTooLarge(
        "the upload is larger than the limit of {} bytes".format(max_bytes))


def copy_file(source, target, chunk_size=1024 * 1024):
    """Copy one open file into another from the source's start."""
    source.seek(0)
    shutil.copyfileobj(source, target, chunk_size)
