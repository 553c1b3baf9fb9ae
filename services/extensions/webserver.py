"""The gateway's web server: nameko's, hardened against hostile clients, answering JSON.

nameko 2.14.1's ``WebServer`` runs eventlet's WSGI server with no timeouts
and no connection limit, and lets any exception of a connection -- even a
client's socket timing out -- escape into the container, which nameko then
kills (EMFILE from accept() included).  Here:

- accept() survives EMFILE/ENFILE (waits and retries) and the server holds at
  most ``HTTP_MAX_CONNECTIONS``; beyond that a connection is answered 503 at
  once and closed;
- every read and write waits at most ``HTTP_SOCKET_TIMEOUT``, an idle
  keep-alive connection is closed after ``HTTP_KEEPALIVE_TIMEOUT``, and the
  request line and headers must arrive within ``HTTP_HEADER_TIMEOUT`` (408);
- a response body must keep the minimum rate (``HTTP_MIN_RATE`` after
  ``HTTP_RATE_GRACE`` seconds) or the connection is dropped;
- nothing a connection does is fatal to the container;
- requests eventlet refuses before routing (over-long lines and headers, bad
  Content-Length, malformed request lines) and routing errors answer JSON.

Patches nameko 2.14.1's ``WebServer.run``/``process_request`` and
``WsgiApp.__call__``, and eventlet 0.41.3's ``HttpProtocol`` (its private
``_read_request_line``, ``handle_one_request``, ``parse_request``,
``send_error`` and the raw bytes of its bare error answers) --
``PATCHED_FOR`` in ``services/extensions/__init__.py``;
tests/unit/test_extension_versions.py fails when an upgrade moves them.
"""
import errno
import json
import logging
import socket
import time
from functools import partial
from http import HTTPStatus

import eventlet
from greenlet import GreenletExit
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from imagepipe.web.api import error_body
from imagepipe.web.limits import ClientLimits, MinimumRate, TooSlow
from imagepipe.web.ratelimits import RateLimits

log = logging.getLogger(__name__)

# accept() errors that mean "out of descriptors or memory for now", not "stop"
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() errors about one connection that died before it was taken
ABORTED = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN})


def json_response(payload, status=200, headers=None):
    return Response(
        json.dumps(payload, separators=(",", ":")), status=status,
        headers=headers, mimetype="application/json")


def error_response(code, message, status, headers=None):
    return json_response(error_body(code, message), status=status, headers=headers)


def response_for_http_exception(exc):
    code = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    headers = [(key, value) for key, value in exc.get_headers() if key != "Content-Type"]
    if isinstance(exc, RequestRedirect):  # e.g. //images//<id>: say where to go
        headers.append(("Location", exc.new_url))
    return error_response(code, exc.description or exc.name, exc.code or 500, headers)


def raw_json_error(status_line, code, message, headers=()):
    """A complete HTTP response, for answers written before any WSGI app runs."""
    body = json.dumps(error_body(code, message)).encode()
    extra = b"".join(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in headers)
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n%s"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (status_line.encode(), extra, len(body), body))


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
        response = provider.handle_request(request)
        body = response(environ, start_response)
        if response.mimetype == "text/event-stream":
            return body  # a live stream is quiet between events on purpose
        return RateKeepingBody(body, self.server.limits)


class RateKeepingBody:
    """A response body that must reach the client at the minimum rate.

    The WSGI server writes each chunk with blocking sends; a client reading
    a trickle would hold the connection (and the file or buffer behind it)
    for as long as it likes.  A timer, re-armed after every chunk, bounds how
    long the next write may take at the minimum rate; the sum bounds the
    whole response.
    """

    def __init__(self, chunks, limits):
        self._chunks = chunks
        self._limits = limits
        self._rate = MinimumRate(limits.min_rate, limits.rate_grace)
        self._timer = None

    def __iter__(self):
        for chunk in self._chunks:
            self._cancel_timer()
            self._rate.moved(0)  # TooSlow if the previous chunks dragged on
            # the server writes this chunk after we yield it; it must be out
            # by the time the whole response so far is due
            due = self._rate.seconds_for(self._rate.total + len(chunk))
            remaining = max(self._limits.socket_timeout, due - (time.monotonic() - self._rate.started))
            self._timer = eventlet.Timeout(remaining, SlowReader())
            yield chunk
            self._rate.total += len(chunk)
        self._cancel_timer()

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self):
        self._cancel_timer()
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class SlowReader(Exception):
    """The client did not take the response at the minimum rate."""


class HeaderTimeout(Exception):
    """The request line and headers did not arrive in time."""


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
    """eventlet's HTTP protocol with a header deadline, answering what it refuses with JSON.

    eventlet answers an over-long request line (414), over-long headers and a
    bad Content-Length (400) with empty bodies, and a malformed request line
    with http.server's HTML page, all before any WSGI app runs.
    """

    _header_timer = None

    def setup(self):
        super().setup()
        self.wfile = _JsonBareErrors(self.wfile)

    def handle_one_request(self):
        limits = self.server.limits
        # armed before the request line: idle keep-alive time counts too
        self._header_timer = eventlet.Timeout(
            limits.keepalive_timeout + limits.header_timeout, HeaderTimeout())
        try:
            super().handle_one_request()
        except HeaderTimeout:
            self._refuse("408 Request Timeout", "request_timeout",
                         "the request line and headers did not arrive within {:g} s".format(
                             limits.header_timeout))
        except (SlowReader, TooSlow, socket.timeout):
            self.close_connection = 1  # mid-response: nothing sensible can be written
        finally:
            self._header_timer.cancel()

    def parse_request(self):
        try:
            return super().parse_request()
        finally:
            # the headers are in; the body and the answer have their own limits
            self._header_timer.cancel()

    def _read_request_line(self):
        try:
            line = super()._read_request_line()
        except socket.timeout:
            self.close_connection = 1  # an idle keep-alive connection: close quietly
            return ""
        if line and len(line) >= self.server.url_length_limit:
            self._refuse("414 URI Too Long", "uri_too_long",
                         "the request line is longer than {} bytes".format(self.server.url_length_limit))
            return ""  # handle_one_request then closes without answering again
        return line

    def send_error(self, code, message=None, explain=None):
        # http.server's malformed request line / version answers, as JSON
        status = HTTPStatus(code)
        self._refuse("{} {}".format(status.value, status.phrase),
                     status.phrase.lower().replace(" ", "_"), message or status.description)

    def _refuse(self, status_line, code, message):
        self.close_connection = 1
        try:
            self.wfile.write(raw_json_error(status_line, code, message))
        except OSError:
            pass  # the client is gone or not reading: nothing more to do


class JsonWebServer(WebServer):
    """nameko's WebServer with client limits; nothing a connection does stops the container."""

    def setup(self):
        self.limits = ClientLimits.from_config(self.container.config)
        # one set of counters for every route of this gateway
        self.rate_limits = RateLimits.from_limits(self.limits)
        self.connections = 0
        self._exhausted_logged_at = 0.0
        super().setup()

    def get_wsgi_app(self):
        return JsonWsgiApp(self)

    def get_wsgi_server(self, sock, wsgi_app, protocol=JsonProtocol, debug=False):
        server = super().get_wsgi_server(sock, wsgi_app, protocol=protocol, debug=debug)
        server.socket_timeout = self.limits.socket_timeout
        server.keepalive = self.limits.keepalive_timeout
        server.limits = self.limits
        return server

    def run(self):
        while self._is_accepting:
            try:
                sock, address = self._sock.accept()
            except OSError as exc:
                if exc.errno in EXHAUSTED:
                    self._wait_for_descriptors(exc)
                    continue
                if exc.errno in ABORTED:
                    continue
                raise
            if self.connections >= self.limits.max_connections:
                eventlet.spawn_n(refuse_connection, sock, self.limits.max_connections)
                continue
            self.connections += 1
            sock.settimeout(self.limits.socket_timeout)
            self.container.spawn_managed_thread(partial(self.process_request, sock, address))

    def _wait_for_descriptors(self, exc):
        now = time.monotonic()
        if now - self._exhausted_logged_at > 10:
            self._exhausted_logged_at = now
            log.error("cannot accept connections (%s) with %d open; waiting for some to close",
                      errno.errorcode.get(exc.errno, exc.errno), self.connections)
        eventlet.sleep(0.1)

    def process_request(self, sock, address):
        try:
            super().process_request(sock, address)
        except GreenletExit:
            raise  # the container is stopping
        except BaseException as exc:  # one connection's trouble is never the container's
            log.debug("connection from %s ended: %r", address, exc)
        finally:
            self.connections -= 1
            try:
                sock.close()
            except OSError:
                pass


def refuse_connection(sock, limit):
    """Answer a connection over the cap with 503 at once, without reading it."""
    try:
        sock.settimeout(2)
        sock.sendall(raw_json_error(
            "503 Service Unavailable", "too_many_connections",
            "the server holds {} connections already; try again shortly".format(limit),
            headers=[("Retry-After", "1")]))
    except OSError:
        pass
    finally:
        sock.close()
