"""``@http``: nameko's HTTP entrypoint, answering every error as JSON, with keys and limits.

``HttpEntrypoint.response_from_exception`` is the one place where exceptions
become status codes.  Before a request gets a nameko worker:

- with ``API_KEYS`` configured, it must carry ``Authorization: Bearer <key>``
  unless the route is ``public``; the key's tenant goes on the request;
- it must be within the rate limits of its key (its address without keys),
  else 429 with ``Retry-After``;
- an ``upload=True`` route's body is read -- at the minimum rate, into a
  spool -- so a slow client holds a connection, never one of the
  ``MAX_WORKERS`` workers every other request needs.

The server underneath is ``services.extensions.webserver``.
"""
import logging
import socket

import eventlet
from nameko.exceptions import BadRequest as NamekoBadRequest
from nameko.web.handlers import HttpRequestHandler
from werkzeug.exceptions import ClientDisconnected, HTTPException

from imagepipe.errors import (
    BadRequest, PipelineError, RateLimited, RequestTimeout, Unauthorized, Unavailable)
from imagepipe.settings import Settings
from imagepipe.web.keys import ApiKeys
from imagepipe.web.limits import MinimumRate, RateLimitedReader, TooSlow
from imagepipe.web.uploads import read_upload
from services.extensions.webserver import (  # noqa: F401 (the services' one import for HTTP)
    JsonWebServer, error_response, json_response, response_for_http_exception)

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


class HttpEntrypoint(HttpRequestHandler):
    """nameko's @http with API keys, rate limits, bodies read before the worker, JSON errors.

    ``rate``: which limit the route counts against (``"upload"``, ``"read"``,
    or None for none).  ``upload``: read the request's image into
    ``request.upload`` before the worker starts.
    """

    server = JsonWebServer()

    def __init__(self, method, url, public=False, rate="read", upload=False,
                 expected_exceptions=(PipelineError,), **kwargs):
        # expected: logged by nameko as a warning, not an error with a traceback
        super().__init__(method, url, expected_exceptions=expected_exceptions, **kwargs)
        self.public = public
        self.rate = rate
        self.upload = upload

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.api_keys = ApiKeys.from_settings(settings)
        self.max_upload_bytes = settings.max_upload_bytes
        self.limits = settings.client_limits
        super().setup()

    def handle_request(self, request):
        try:
            request.tenant = None if self.public else self.api_keys.tenant_of(request)
            if self.rate:
                self.server.rate_limits.hit(self.rate, request.tenant or request.remote_addr)
            if self.upload:
                request.upload = self._read_upload(request)
        except Exception as exc:
            return self.response_from_exception(exc)
        try:
            return super().handle_request(request)
        finally:
            if self.upload:
                request.upload.close()

    def _read_upload(self, request):
        request.shallow = False  # nameko's handle_request lifts it too, later
        rate = MinimumRate(self.limits.min_rate, self.limits.rate_grace)
        request.environ["wsgi.input"] = RateLimitedReader(request.environ["wsgi.input"], rate)
        # a hard stop too: each read may block up to the socket timeout
        deadline = eventlet.Timeout(rate.seconds_for(self.max_upload_bytes) + self.limits.socket_timeout)
        try:
            return read_upload(request, self.max_upload_bytes, self.limits.spool_memory_bytes)
        except (TooSlow, socket.timeout, eventlet.Timeout) as exc:
            if isinstance(exc, eventlet.Timeout) and exc is not deadline:
                raise
            raise RequestTimeout("the request body arrived too slowly: {}".format(
                exc or "nothing came for {:g} s".format(self.limits.socket_timeout))) from None
        except (ClientDisconnected, ConnectionError) as exc:
            # werkzeug reports a read that timed out as a disconnect
            if isinstance(exc.__context__, socket.timeout):
                raise RequestTimeout("the request body stopped coming: nothing for {:g} s".format(
                    self.limits.socket_timeout)) from None
            raise BadRequest("the request body ended early ({})".format(type(exc).__name__)) from None
        finally:
            deadline.cancel()

    def response_from_exception(self, exc):
        if isinstance(exc, PipelineError):
            headers = None
            if isinstance(exc, Unavailable):
                headers = {"Retry-After": RETRY_AFTER_SECONDS}
                log.warning("answering 503: %s", exc.message)
            elif isinstance(exc, RateLimited):
                headers = {"Retry-After": str(exc.retry_after)}
            elif isinstance(exc, Unauthorized):
                headers = {"WWW-Authenticate": "Bearer"}
            elif isinstance(exc, RequestTimeout):
                headers = {"Connection": "close"}
            return error_response(exc.code, exc.message, exc.http_status, headers)
        if isinstance(exc, HTTPException):
            return response_for_http_exception(exc)
        if isinstance(exc, NamekoBadRequest):
            return error_response("bad_request", str(exc), 400)
        log.error("unexpected error in %s", self.method_name, exc_info=exc)
        return error_response("internal_error", "an unexpected error occurred", 500)


http = HttpEntrypoint.decorator
