"""Metrics and log correlation for every service.

``Metrics`` gives a service the recorder functions of
``imagepipe.observability.metrics``, times every entrypoint call, counts the
gateway's uploads, and serves the process's metrics on ``METRICS_ADDRESS``
for services without a web server -- and ``GET /health`` there, from the
state of the process's containers (``services/extensions/health.py``).
The exporter is one per OS process, however many containers run in it:
started by the first container that starts, stopped with the last one.

``LogContext`` binds each worker's correlation id -- the first call id of its
nameko call stack, i.e. the request that started the chain (an HTTP upload,
a timer tick) -- and its own call id to everything the worker logs.  nameko
carries the call stack in the headers of RPC calls and events, so the
gateway's upload, storage's writes and imaging's job share one id.
"""
import logging
import threading
import time

import eventlet
import eventlet.wsgi
from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import choose_encoder

from imagepipe.observability import logformat, metrics
from imagepipe.errors import PipelineError
from imagepipe.settings import Settings
from services.extensions import health

log = logging.getLogger(__name__)


def exposition(accept_header):
    """``(body, content_type)`` of every metric in this process."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(REGISTRY), content_type


class Exporter:
    """The process's metrics (and health) HTTP server, shared by reference count."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._socket = None
        self._server = None
        self.address = None  # (host, port) actually bound, once started
        self.containers = []  # whose state GET /health reports

    def acquire(self, address, container=None):
        with self._lock:
            self._users += 1
            if container is not None:
                self.containers.append(container)
            if not address:
                return
            if self._server is None:
                self._start(address)
            elif address[1] != 0 and address != self.address:
                log.warning("metrics exporter already on %s:%d; ignoring %s:%d",
                            *self.address, *address)

    def release(self, container=None):
        with self._lock:
            if container in self.containers:
                self.containers.remove(container)
            self._users = max(0, self._users - 1)
            if self._users == 0 and self._server is not None:
                self._stop()

    def _start(self, address):
        self._socket = eventlet.listen(address)
        self.address = self._socket.getsockname()[:2]
        self._server = eventlet.spawn(
            eventlet.wsgi.server, self._socket,
            health.wsgi_app(lambda: list(self.containers), make_wsgi_app(REGISTRY)),
            log_output=False, socket_timeout=30)
        log.info("metrics exporter listening on http://%s:%d/metrics (and /health)", *self.address)

    def _stop(self):
        self._server.kill()
        self._socket.close()
        self._server = self._socket = self.address = None


EXPORTER = Exporter()


class Metrics(DependencyProvider):
    """The ``imagepipe.observability.metrics`` recorder, plus per-worker timing.

    ``upload_entrypoint`` names the gateway method whose calls are uploads:
    a 2xx answer counts as accepted, an error as rejected with its code.
    """

    def __init__(self, upload_entrypoint=None, **kwargs):
        super().__init__(**kwargs)
        self.upload_entrypoint = upload_entrypoint
        self._started = {}

    def setup(self):
        self.address = Settings.from_config(self.container.config).metrics_address

    def start(self):
        EXPORTER.acquire(self.address, self.container)

    def stop(self):
        EXPORTER.release(self.container)

    def kill(self):
        EXPORTER.release(self.container)

    def get_dependency(self, worker_ctx):
        return metrics

    def worker_setup(self, worker_ctx):
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started.pop(worker_ctx, None)
        if started is None:
            return
        seconds = time.perf_counter() - started
        method_name = worker_ctx.entrypoint.method_name
        metrics.worker_finished(self.container.service_name, method_name, seconds,
                                failed=exc_info is not None)
        if method_name == self.upload_entrypoint:
            record_upload(result, exc_info, seconds)

    def worker_teardown(self, worker_ctx):
        self._started.pop(worker_ctx, None)


def record_upload(response, exc_info, seconds):
    if exc_info is not None:
        error = exc_info[1]
        reason = error.code if isinstance(error, PipelineError) else "internal_error"
        metrics.upload_rejected(reason)
        log.info("upload rejected (%s) in %.3f s: %s", reason, seconds, error)
    elif 200 <= response.status_code < 300:
        metrics.upload_accepted()
        image_path = response.headers.get("Location", "")
        log.info("upload accepted: image %s in %.3f s", image_path.rsplit("/", 1)[-1], seconds)
    else:
        metrics.upload_rejected(str(response.status_code))


class LogContext(DependencyProvider):
    """Puts the worker's correlation id and call id on its log records."""

    def worker_setup(self, worker_ctx):
        logformat.bind(correlation_id=worker_ctx.call_id_stack[0], call_id=worker_ctx.call_id)

    def worker_teardown(self, worker_ctx):
        logformat.clear()

    def get_dependency(self, worker_ctx):
        return worker_ctx.call_id_stack[0]
