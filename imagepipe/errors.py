"""Errors that cross service boundaries and reach HTTP clients.

Each error carries the stable machine-readable ``code`` and the HTTP status
the gateway answers with.  ``error_classes()`` lists the whole hierarchy;
callers of storage register it with nameko's remote-exception registry
(``services.extensions.rpc``), so an error raised by storage arrives at the
gateway as the same type, not as a ``RemoteError`` string.

Every class must be constructible from its message alone: that is how nameko
rebuilds a remote exception (``cls(*exc.args)``).
"""


class PipelineError(Exception):
    code = "internal_error"
    http_status = 500

    @property
    def message(self):
        return str(self.args[0]) if self.args else self.code.replace("_", " ")


class BadRequest(PipelineError):
    code = "bad_request"
    http_status = 400


class Unauthorized(PipelineError):
    code = "unauthorized"
    http_status = 401


class NotFound(PipelineError):
    code = "not_found"
    http_status = 404


class PayloadTooLarge(PipelineError):
    code = "payload_too_large"
    http_status = 413


class TooManyPixels(PipelineError):
    code = "too_many_pixels"
    http_status = 413


class ImageTooComplex(TooManyPixels):
    """Over a decoder work cap other than pixels: JPEG scans, PNG chunks, GIF blocks.

    413 like the pixel and frame caps, for the same reason: the file may be
    valid, but decoding it costs more than this server is willing to spend
    (a server with higher limits would take it), so a client must not retry
    it as it is; 422 is for files that are broken.  A subclass of
    ``TooManyPixels``: whoever handles "too much to decode" handles this too.
    """

    code = "image_too_complex"


class UnsupportedFormat(PipelineError):
    code = "unsupported_format"
    http_status = 415


class InvalidImage(PipelineError):
    """The bytes claim to be an allowed image format but cannot be decoded."""

    code = "invalid_image"
    http_status = 422


class RequestTimeout(PipelineError):
    """The client sent its request too slowly."""

    code = "request_timeout"
    http_status = 408


class RateLimited(PipelineError):
    """Too many requests from one key (or address); ``retry_after`` seconds until allowed."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message="rate limit exceeded", retry_after=1):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class InsufficientStorage(PipelineError):
    """Storing the upload would cross the disk's free-space floor or the key's quota."""

    code = "insufficient_storage"
    http_status = 507


class QuotaExceeded(InsufficientStorage):
    code = "quota_exceeded"


class InvalidGrant(PipelineError):
    """A blob grant that is forged, expired, used for another object, or names no blob."""

    code = "invalid_grant"
    http_status = 400


class Unavailable(PipelineError):
    """A dependency (broker, storage) did not answer in time; try again."""

    code = "service_unavailable"
    http_status = 503


class InvalidCallbackUrl(BadRequest):
    """A ``callback_url`` that is not a usable absolute http(s) URL."""

    code = "invalid_callback_url"


class CallbackUrlForbidden(BadRequest):
    """A ``callback_url`` refused by the SSRF rule (scheme or non-public address)."""

    code = "callback_url_forbidden"


class UnresolvableCallbackHost(CallbackUrlForbidden):
    """A ``callback_url`` host with no address: told apart from a private one only in code.

    Clients get the same code and message as for a non-public address, so
    the answer does not reveal which internal names exist; delivery retries
    it later (DNS may be down for now) instead of giving up.
    """


class InvalidFocus(BadRequest):
    """An upload's ``focus`` that is not two fractions ``x,y`` from 0 to 1."""

    code = "invalid_focus"


# Permanent errors: retrying the same bytes can never succeed.
PERMANENT_IMAGE_ERRORS = (InvalidImage, TooManyPixels, UnsupportedFormat)

# A job that names no (valid, existing) image cannot succeed on retry either.
PERMANENT_JOB_ERRORS = (NotFound, BadRequest)


def error_classes(root=PipelineError):
    """``root`` and every subclass of it, however deep."""
    classes = [root]
    for subclass in root.__subclasses__():
        classes.extend(error_classes(subclass))
    return classes
