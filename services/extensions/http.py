"""``@http``: nameko's HTTP entrypoint, answering every error as JSON and checking API keys.

``HttpEntrypoint.response_from_exception`` is the one place where exceptions
become status codes.  The web server is subclassed too, because routing
errors (unknown path, wrong method) are raised before any entrypoint runs and
werkzeug would otherwise answer them with HTML, and eventlet refuses some
requests before routing with empty or HTML answers.

Patches nameko 2.14.1's ``WsgiApp.__call__`` and eventlet 0.41.3's
``HttpProtocol`` (its private ``_read_request_line``, ``send_error`` and the
raw bytes of its bare error answers) -- ``PATCHED_FOR`` in
``services/extensions/__init__.py``; tests/unit/test_extension_versions.py
fails when an upgrade moves what these rely on.
"""
import hmac
import json
import logging
from http import HTTPStatus

from nameko.exceptions import BadRequest as NamekoBadRequest
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from imagepipe.errors import Forbidden, PipelineError, Unauthorized, Unavailable
from imagepipe.settings import Settings
from imagepipe.web.api import error_body
from imagepipe.web.signedurls import is_signed, signer_for

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
# What let a request in (``request.authorized_by``): nothing needed, an API
# key, or a signed URL (then ``request.signed_until`` is its expiry).
OPEN, BEARER, SIGNATURE = "open", "bearer", "signature"


def json_response(payload, status=200, headers=None):
    return Response(
        json.dumps(payload, separators=(",", ":")), status=status,
        headers=headers, mimetype="application/json")


def error_response(code, message, status, headers=None):
    return json_response(error_body(code, message), status=status, headers=headers)


def response_for_http_exception(exc):
    code = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    headers = [(key, value) for key, value in exc.get_headers() if key != "Content-Type"]
    return error_response(code, exc.description or exc.name, exc.code or 500, headers)


class JsonWsgiApp(WsgiApp):
    """nameko's WsgiApp, answering routing errors with JSON instead of HTML."""

    def __call__(self, environ, start_response):
        # shallow: nobody may read the body before the entrypoint asks for it
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
        except HTTPException as exc:
            return response_for_http_exception(exc)(environ, start_response)
        request.path_values = values
        return provider.handle_request(request)(environ, start_response)


def raw_json_error(status_line, code, message):
    """A complete HTTP response, for answers written before any WSGI app runs."""
    body = json.dumps(error_body(code, message)).encode()
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (status_line.encode(), len(body), body))


# eventlet refuses some requests before routing, with bare empty answers;
# these are their first lines and what we answer instead.
BARE_EVENTLET_ERRORS = {
    b"HTTP/1.0 400 Header Line Too Long\r\n": ("400 Bad Request", "bad_request",
                                                 "a request header line is too long"),
    b"HTTP/1.0 400 Headers Too Large\r\n": ("400 Bad Request", "bad_request",
                                              "the request headers are too large"),
    b"HTTP/1.0 400 Bad Request\r\n": ("400 Bad Request", "bad_request",
                                        "malformed request: invalid Content-Length, or "
                                        "Content-Length together with Transfer-Encoding"),
}


class _JsonBareErrors:
    """Wraps the connection's write side, turning eventlet's bare errors into JSON."""

    def __init__(self, wfile):
        self._wfile = wfile

    def write(self, data):
        for first_line, (status_line, code, message) in BARE_EVENTLET_ERRORS.items():
            if data.startswith(first_line):
                data = raw_json_error(status_line, code, message)
                break
        return self._wfile.write(data)

    def __getattr__(self, name):
        return getattr(self._wfile, name)


class JsonProtocol(HttpOnlyProtocol):
    """eventlet's HTTP protocol, answering requests it refuses before routing with JSON.

    eventlet answers an over-long request line (414), over-long headers and a
    bad Content-Length (400) with empty bodies, and a malformed request line
    with http.server's HTML page, all before any WSGI app runs.
    """

    def setup(self):
        super().setup()
        self.wfile = _JsonBareErrors(self.wfile)

    def _read_request_line(self):
        line = super()._read_request_line()
        if line and len(line) >= self.server.url_length_limit:
            self.wfile.write(raw_json_error("414 URI Too Long", "uri_too_long",
                                            "the request line is longer than {} bytes".format(
                                                self.server.url_length_limit)))
            self.close_connection = 1
            return ""  # handle_one_request then closes without answering again
        return line

    def send_error(self, code, message=None, explain=None):
        # http.server's malformed request line / version answers, as JSON
        self.close_connection = True
        status = HTTPStatus(code)
        self.wfile.write(raw_json_error("{} {}".format(status.value, status.phrase),
                                        status.phrase.lower().replace(" ", "_"),
                                        message or status.description))


class JsonWebServer(WebServer):
    def get_wsgi_app(self):
        return JsonWsgiApp(self)

    def get_wsgi_server(self, sock, wsgi_app, protocol=JsonProtocol, debug=False):
        return super().get_wsgi_server(sock, wsgi_app, protocol=protocol, debug=debug)


class HttpEntrypoint(HttpRequestHandler):
    """nameko's @http, answering JSON errors and checking API keys.

    With ``API_KEYS`` configured, every request needs
    ``Authorization: Bearer <one of them>`` unless the route is ``public`` --
    or, on a ``signed_urls`` route with ``URL_SIGNING_SECRET`` set, a valid
    signed URL (``imagepipe.web.signedurls``); a signed URL that does not
    verify (tampered, expired, another path) is 403.
    """

    server = JsonWebServer()

    def __init__(self, method, url, public=False, signed_urls=False,
                 expected_exceptions=(PipelineError,), **kwargs):
        # expected: logged by nameko as a warning, not an error with a traceback
        super().__init__(method, url, expected_exceptions=expected_exceptions, **kwargs)
        self.public = public
        self.signed_urls = signed_urls

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.api_keys = [key.encode() for key in settings.api_keys]
        self.signer = signer_for(settings) if self.signed_urls else None
        super().setup()

    def handle_request(self, request):
        request.authorized_by = OPEN
        if self.api_keys and not self.public:
            if self._authorized(request):
                request.authorized_by = BEARER
            elif self.signer is not None and is_signed(request.args):
                try:
                    request.signed_until = self.signer.verify(request.path, request.args)
                except Forbidden as exc:
                    return error_response(exc.code, exc.message, exc.http_status)
                request.authorized_by = SIGNATURE
            else:
                return error_response(
                    Unauthorized.code, "send Authorization: Bearer <API key>",
                    Unauthorized.http_status, {"WWW-Authenticate": "Bearer"})
        return super().handle_request(request)

    def _authorized(self, request):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        presented = token.strip().encode()
        # compare with every key, in constant time, so timing reveals nothing
        return any([hmac.compare_digest(presented, key) for key in self.api_keys])

    def response_from_exception(self, exc):
        if isinstance(exc, PipelineError):
            headers = {"Retry-After": RETRY_AFTER_SECONDS} if isinstance(exc, Unavailable) else None
            if isinstance(exc, Unavailable):
                log.warning("answering 503: %s", exc.message)
            return error_response(exc.code, exc.message, exc.http_status, headers)
        if isinstance(exc, HTTPException):
            return response_for_http_exception(exc)
        if isinstance(exc, NamekoBadRequest):
            return error_response("bad_request", str(exc), 400)
        log.error("unexpected error in %s", self.method_name, exc_info=exc)
        return error_response("internal_error", "an unexpected error occurred", 500)


http = HttpEntrypoint.decorator
