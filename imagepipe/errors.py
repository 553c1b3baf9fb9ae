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


class ImageNotFound(NotFound):
    """No image has this id: never uploaded, or deleted.

    Told apart from other ``NotFound`` (a missing blob of an image that
    exists) so that a job for an image deleted meanwhile is dropped, not retried.
    """


class Forbidden(PipelineError):
    code = "forbidden"
    http_status = 403


class InvalidSignature(Forbidden):
    """A signed URL whose signature does not match its path and expiry."""

    code = "invalid_signature"


class ExpiredSignature(Forbidden):
    """A signed URL past its expiry."""

    code = "expired_signature"


class Conflict(PipelineError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(PipelineError):
    code = "payload_too_large"
    http_status = 413


class TooManyPixels(PipelineError):
    code = "too_many_pixels"
    http_status = 413


class UnsupportedFormat(PipelineError):
    code = "unsupported_format"
    http_status = 415


class InvalidImage(PipelineError):
    """The bytes claim to be an allowed image format but cannot be decoded."""

    code = "invalid_image"
    http_status = 422


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
