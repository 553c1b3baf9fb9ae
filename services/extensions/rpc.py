"""RPC: ``@rpc`` for the services that answer, ``StorageRpc`` for those that call storage.

Both are nameko's, changed where the pipeline needs it:

- ``@rpc`` declares its queue as ``RPC_QUEUE_TYPE`` says, answers with
  transient messages, and survives a broker that is gone when the answer is
  ready (nameko would kill the service);
- ``StorageRpc`` gives every call a deadline (a plain ``RpcProxy`` waits
  forever when the storage queue exists but nobody consumes it), sends
  transient requests that expire on the broker, uses a reply queue that can
  be declared again on another cluster node, and receives storage's errors
  as the ``imagepipe.errors`` types rather than ``RemoteError``.

Patches nameko 2.14.1's ``RpcConsumer.handle_result``, ``Responder`` and
``ReplyListener.setup`` (``PATCHED_FOR`` in ``services/extensions/__init__.py``).
"""
import logging
import time
from functools import partial

import eventlet
from kombu import Queue
from nameko.amqp.publish import Publisher as AmqpPublisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, LOGIN_METHOD_CONFIG_KEY,
    NON_PERSISTENT, SERIALIZER_CONFIG_KEY)
from nameko.exceptions import UnknownService, get_module_path, registry
from nameko.rpc import ReplyListener, Responder, Rpc, RpcConsumer, RpcProxy, get_rpc_exchange

from imagepipe.errors import PipelineError, Unavailable, error_classes
from imagepipe.observability import metrics
from imagepipe.settings import Settings
from services import topology
from services.extensions.amqp import BROKER_ERRORS, FailoverQueueConsumer, declare_queues

log = logging.getLogger(__name__)


def register_remote_errors():
    """Let nameko rebuild every ``imagepipe.errors`` class from an RPC reply.

    nameko turns a remote exception into its own type only if the type's
    path is in its registry; otherwise callers get ``RemoteError``.  Idempotent.
    """
    for error_class in error_classes():
        registry[get_module_path(error_class)] = error_class


# -- calling storage ------------------------------------------------------------

class FailoverReplyListener(ReplyListener):
    """RPC reply listener whose reply queue can be declared again on another node.

    nameko declares reply queues durable; a durable classic queue cannot be
    redeclared while the node it lives on is down (NOT_FOUND "home node ...
    is down"), so after a node loss every RPC would time out for good.  A
    transient queue is dropped with its node and made anew on the next.
    """

    queue_consumer = FailoverQueueConsumer()

    def setup(self):
        super().setup()
        self.queue = Queue(self.queue.name, exchange=self.queue.exchange,
                           routing_key=self.queue.routing_key, durable=False,
                           queue_arguments=self.queue.queue_arguments)


class StorageRpc(RpcProxy):
    """RPC to the storage service with a deadline on every call.

    Every call raises ``Unavailable`` after ``RPC_TIMEOUT`` seconds, and the
    request itself expires on the broker, so a late storage process does not
    act on calls nobody awaits any more.
    """

    rpc_reply_listener = FailoverReplyListener()

    def __init__(self, **options):
        super().__init__("storage", **options)

    def setup(self):
        register_remote_errors()
        self.timeout = Settings.from_config(self.container.config).rpc_timeout
        self.options.setdefault("expiration", self.timeout)
        # see TransientResponder: a request outliving a broker restart has no caller left
        self.options.setdefault("delivery_mode", NON_PERSISTENT)
        super().setup()

    def get_dependency(self, worker_ctx):
        return TimedServiceProxy(super().get_dependency(worker_ctx), self.timeout)


class TimedServiceProxy:
    """A service proxy whose every call returns within ``timeout`` or raises ``Unavailable``.

    Its replies arrive through the container's reply listener, not the
    worker's, so it stays usable after the worker that made it has returned
    (the gateway's live status streams rely on that).
    """

    def __init__(self, proxy, timeout):
        self._proxy = proxy
        self._timeout = timeout

    def __getattr__(self, method_name):
        return partial(self._call, method_name)

    def _call(self, method_name, *args, **kwargs):
        target = "{}.{}".format(self._proxy.service_name, method_name)
        started = time.perf_counter()
        deadline = eventlet.Timeout(self._timeout)
        try:
            method = getattr(self._proxy, method_name)
            return method.call_async(*args, **kwargs).result()
        except eventlet.Timeout as exc:
            if exc is not deadline:
                raise
            raise Unavailable("{} did not answer within {:g} s".format(
                target, self._timeout)) from None
        except UnknownService:
            raise Unavailable("no {} service is running".format(
                self._proxy.service_name)) from None
        except BROKER_ERRORS as exc:
            raise Unavailable("the message broker is unreachable ({})".format(
                type(exc).__name__)) from None
        finally:
            deadline.cancel()
            metrics.rpc_call_finished(target, time.perf_counter() - started)


# -- answering ------------------------------------------------------------------

class _TransientPublisher(AmqpPublisher):
    delivery_mode = NON_PERSISTENT


class TransientResponder(Responder):
    """nameko's RPC reply, published as a transient message.

    nameko publishes every message persistent.  For RPC that buys nothing:
    a caller waits RPC_TIMEOUT at most, and after a broker restart its reply
    queue is gone anyway; a client whose call is lost gets an error and
    retries.  Persistence costs broker CPU and disk for every reply
    (bench/EXPERIMENTS.md); durability lives where it matters: blobs and
    catalog rows are on disk before storage answers, and jobs are persistent
    messages in durable queues.
    """

    publisher_cls = _TransientPublisher


class ConfiguredRpcConsumer(RpcConsumer):
    """nameko's RPC queue consumer, declaring the queue as ``RPC_QUEUE_TYPE``
    says, answering with transient replies, and surviving a broker that is
    gone when the answer is ready."""

    queue_consumer = FailoverQueueConsumer()

    def setup(self):
        super().setup()
        config = self.container.config
        self.queue = topology.rpc_queue(self.queue, config)
        declare_queues(config, [self.queue])

    def handle_result(self, message, result, exc_info):
        # nameko's RpcConsumer.handle_result, with TransientResponder for
        # Responder (nameko names the class as a module global)
        config = self.container.config
        responder = TransientResponder(
            config[AMQP_URI_CONFIG_KEY], get_rpc_exchange(config),
            config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
            ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        try:
            result, exc_info = responder.send_response(result, exc_info)
        except BROKER_ERRORS as exc:
            # nameko would kill the whole service here.  The broker went away
            # between the call and its answer (a restart, a lost node): the
            # caller times out and retries, and every storage call is
            # idempotent, so the answer is simply lost.
            log.warning("could not answer an RPC call, the broker connection is gone (%s); "
                        "the caller times out and retries", exc)
        self.queue_consumer.ack_message(message)
        return result, exc_info


class ConfiguredRpc(Rpc):
    """``@rpc`` whose queue follows ``RPC_QUEUE_TYPE`` (classic or quorum).

    ``imagepipe.errors`` are answers (an unknown id, a bad request), logged
    by nameko as warnings, not as errors with a traceback.
    """

    rpc_consumer = ConfiguredRpcConsumer()

    def __init__(self, expected_exceptions=(PipelineError,), **kwargs):
        super().__init__(expected_exceptions=expected_exceptions, **kwargs)


rpc = ConfiguredRpc.decorator
