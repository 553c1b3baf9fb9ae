"""The nameko and eventlet internals services/extensions/ overrides are still there.

Each extension subclasses a nameko or eventlet class and overrides something
that is the library's to change.  An upgrade must fail here first, not
silently disable a patch: the versions are the ones the patches were written
against, and the members and source lines below are what they rely on.
"""
import inspect
from importlib.metadata import version

import eventlet.wsgi
import nameko.containers
import nameko.rpc
from nameko.messaging import Consumer, QueueConsumer
from nameko.rpc import ReplyListener, Responder, RpcConsumer
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp

from services.extensions import PATCHED_FOR
from services.extensions.webserver import BARE_EVENTLET_ERRORS


def test_installed_versions_are_the_ones_the_patches_target():
    installed = {package: version(package) for package in PATCHED_FOR}
    assert installed == PATCHED_FOR, (
        "nameko or eventlet changed: review every override in services/extensions/ "
        "against the new version, then update PATCHED_FOR")


def test_overridden_members_exist_on_the_bases():
    for cls, names in [
        (HttpOnlyProtocol, ["setup", "_read_request_line", "send_error", "handle_one_request",
                            "parse_request"]),
        (WsgiApp, ["__call__"]),
        (WebServer, ["run", "process_request", "get_wsgi_server", "setup"]),
        (RpcConsumer, ["handle_result", "setup"]),
        (ReplyListener, ["setup"]),
        (QueueConsumer, ["ack_message", "requeue_message", "on_consume_ready", "unregister_provider"]),
    ]:
        for name in names:
            assert name in vars(cls) or any(name in vars(base) for base in cls.__mro__[1:-1]), (
                cls, name)
    assert "publisher_cls" in vars(Responder)
    # GET /health reads these nameko internals (services/extensions/health.py)
    assert "self._consumers_ready = Event()" in inspect.getsource(QueueConsumer.__init__)
    container_init = inspect.getsource(nameko.containers.ServiceContainer.__init__)
    assert all(flag in container_init for flag in ("self.started", "self._being_killed", "self._died"))
    assert list(inspect.signature(Consumer.__init__).parameters)[:3] == [
        "self", "queue", "requeue_on_error"]


def test_the_copied_rpc_answer_still_matches_nameko():
    # ConfiguredRpcConsumer.handle_result is nameko's with another Responder;
    # nameko still builds its Responder there, from these arguments.
    source = inspect.getsource(RpcConsumer.handle_result)
    assert "responder = Responder(" in source
    assert "self.queue_consumer.ack_message(message)" in source
    assert "Responder" in vars(nameko.rpc)


def test_eventlet_still_writes_the_bare_errors_we_rewrite():
    source = inspect.getsource(eventlet.wsgi)
    for first_line in BARE_EVENTLET_ERRORS:
        assert first_line.decode().strip() in source, first_line
    assert "def _read_request_line(self)" in source
    # the server's attributes JsonWebServer sets: eventlet still reads them
    assert "self.server.keepalive" in source and "self.server.socket_timeout" in source


def test_nameko_still_accepts_in_the_loop_we_replace():
    source = inspect.getsource(WebServer.run)
    assert "self._sock.accept()" in source and "spawn_managed_thread" in source
