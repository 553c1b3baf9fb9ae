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

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from imagepipe.errors import BadRequest, PayloadTooLarge, UnsupportedFormat
from imagepipe.web.limits import spool

UPLOAD_FIELD = "image"
# Room for multipart boundaries, part headers and small form fields.
FORM_OVERHEAD = 64 * 1024
# A form carries the image and a few small fields (callback_url, focus).
MAX_FORM_PARTS = 32
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


def _read_multipart(request, max_bytes, spool_bytes):
    # python-multipart, not werkzeug's form parser: the same streaming parse
    # for a fraction of the CPU, on every upload's path (bench/EXPERIMENTS.md)
    boundary = request.mimetype_params.get("boundary", "")
    if not boundary:
        raise BadRequest("malformed multipart body: no boundary in its Content-Type")
    form = _MultipartForm(spool_bytes, max_bytes)
    try:
        parser = MultipartParser(boundary.encode("latin-1"), form.callbacks())
        _copy_limited(request.stream, parser, max_bytes, framing=FORM_OVERHEAD)
        if not form.ended:
            raise BadRequest("malformed multipart body: it ends before its closing boundary")
    except (FormParserError, UnicodeEncodeError) as exc:
        form.discard()
        raise BadRequest("malformed multipart body: {}".format(exc)) from None
    except BaseException:
        form.discard()
        raise
    if form.image is None:
        raise BadRequest("multipart field 'image' is missing")
    if not form.image_size:
        form.discard()
        raise BadRequest("multipart field 'image' is empty")
    form.image.seek(0)
    return Upload(form.image, form.image_size, form.fields)


class _MultipartForm:
    """python-multipart's callbacks for an upload form.

    The first file part named ``image`` goes to a spool, within ``max_bytes``;
    other parts without a filename are fields, read as UTF-8, first value of
    a name wins (as werkzeug's ``MultiDict.get``); other file parts are
    dropped as they stream past.
    """

    def __init__(self, spool_bytes, max_bytes):
        self.spool_bytes, self.max_bytes = spool_bytes, max_bytes
        self.fields, self.image, self.image_size, self.ended = {}, None, 0, False
        self._parts = self._field_bytes = 0
        self._headers, self._header_name, self._header_value = {}, b"", b""
        self._write, self._is_field = None, False

    def callbacks(self):
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        }

    def discard(self):
        if self.image is not None:
            self.image.close()
            self.image = None

    def _part_begin(self):
        self._parts += 1
        if self._parts > MAX_FORM_PARTS:
            raise BadRequest("malformed multipart body: more than {} parts".format(MAX_FORM_PARTS))
        self._headers, self._write, self._is_field = {}, None, False

    def _header_field(self, data, start, end):
        self._header_name += data[start:end]

    def _header_value_data(self, data, start, end):
        self._header_value += data[start:end]

    def _header_end(self):
        self._headers.setdefault(self._header_name.lower(), self._header_value)
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self):
        kind, options = parse_options_header(self._headers.get(b"content-disposition"))
        if kind != b"form-data" or b"name" not in options:
            raise BadRequest("malformed multipart body: a part without a form-data name")
        name = options[b"name"].decode("utf-8", "replace")
        if b"filename" not in options:
            value = []
            self._write, self._is_field = value.append, True
            self.fields.setdefault(name, value)  # joined when the form ends
        elif name == UPLOAD_FIELD and self.image is None:
            self.image = spool(self.spool_bytes)
            self._write = self._write_image
        # any other file part: nothing keeps it

    def _part_data(self, data, start, end):
        if self._write is None:
            return
        if self._is_field:
            self._field_bytes += end - start
            if self._field_bytes > FORM_OVERHEAD:
                raise PayloadTooLarge("the form's fields besides the image exceed {} bytes".format(
                    FORM_OVERHEAD))
        self._write(data[start:end])

    def _write_image(self, chunk):
        self.image_size += len(chunk)
        if self.image_size > self.max_bytes:
            raise _too_large(self.max_bytes)
        self.image.write(chunk)

    def _end(self):
        self.ended = True
        self.fields = {name: b"".join(chunks).decode("utf-8", "replace")
                       for name, chunks in self.fields.items()}


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


def _copy_limited(stream, target, max_bytes, framing=0):
    """Copy ``stream`` into ``target.write`` up to ``max_bytes`` (plus ``framing``); its size."""
    limit, size = max_bytes + framing, 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return size
        size += len(chunk)
        if size > limit:
            raise _too_large(max_bytes)
        target.write(chunk)


def _too_large(max_bytes):
    return PayloadTooLarge(
        "the upload is larger than the limit of {} bytes".format(max_bytes))


def copy_file(source, target, chunk_size=1024 * 1024):
    """Copy one open file into another from the source's start."""
    source.seek(0)
    shutil.copyfileobj(source, target, chunk_size)
