"""nameko DependencyProviders: the resources the services are given.

Each wraps a plain ``imagepipe`` object, so ``worker_factory`` can swap it in
unit tests and the services themselves stay declarative.
"""
import logging
import time
from functools import partial

import eventlet
from amqp.exceptions import ConnectionError as AmqpConnectionError
from kombu import Connection, Queue
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher as AmqpPublisher
from nameko.amqp.publish import UndeliverableMessage
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, LOGIN_METHOD_CONFIG_KEY,
    NON_PERSISTENT, SERIALIZER_CONFIG_KEY)
from nameko.events import EventDispatcher, EventHandler
from nameko.messaging import QueueConsumer
from nameko.exceptions import UnknownService, get_module_path, registry
from nameko.extensions import DependencyProvider
from nameko.timer import Timer
from nameko.rpc import ReplyListener, Responder, Rpc, RpcConsumer, RpcProxy, get_rpc_exchange

from imagepipe import heap, metrics
from imagepipe.renderpool import RenderPool
from imagepipe.catalog import isoformat
from imagepipe.errors import ALL_ERRORS, Unavailable
from imagepipe.settings import Settings
from imagepipe.store import ImageStore
from services import deadletters, topology

log = logging.getLogger(__name__)

# Errors raised by storage arrive as these types, not as RemoteError.
for _error_cls in ALL_ERRORS:
    registry[get_module_path(_error_cls)] = _error_cls

BROKER_ERRORS = (OperationalError, ConnectionError, OSError, AmqpConnectionError)

# Every service process moves image-sized buffers; without this each one is
# a fresh mmap, faulted in page by page (imagepipe/heap.py has the numbers).
heap.keep_big_buffers_on_heap()


class Config(DependencyProvider):
    """The parsed, validated ``config.yaml`` (an ``imagepipe.settings.Settings``)."""

    def setup(self):
        self.settings = Settings.from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings


class Storage(DependencyProvider):
    """The storage service's own ``ImageStore`` (blobs and catalog)."""

    def setup(self):
        self.store = ImageStore.from_settings(Settings.from_config(self.container.config))
        # metrics: count and log every blob written; report catalog totals
        self.store.blobs = metrics.MeteredBlobStore(self.store.blobs)

    def start(self):
        metrics.STORED.attach(self.store.catalog)

    def stop(self):
        metrics.STORED.detach(self.store.catalog)

    def kill(self):
        metrics.STORED.detach(self.store.catalog)

    def get_dependency(self, worker_ctx):
        return self.store


class Renderer(DependencyProvider):
    """``render(data, presets)`` in a pool of worker processes.

    The pool bounds each render in time and memory and survives decoder
    crashes; the service's event loop only waits on pipes, so it keeps
    serving AMQP heartbeats while every core renders.
    """

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.pool = RenderPool(
            size=settings.render_workers, timeout=settings.render_timeout,
            memory_limit_mb=settings.render_memory_mb, nice=settings.render_nice,
            render_kwargs={"formats": settings.allowed_formats, "max_pixels": settings.max_pixels})

    def stop(self):
        self.pool.close()

    def kill(self):
        self.pool.close()

    def get_dependency(self, worker_ctx):
        return self.pool.render


class FailoverQueueConsumer(QueueConsumer):
    """nameko's queue consumer, surviving a broker node that vanishes mid-acknowledgement.

    nameko ignores only amqp's ConnectionError there; a node killed outright
    resets the socket instead (ConnectionResetError, BrokenPipeError), which
    would kill the whole service.  The broker re-queues every unacknowledged
    delivery of a lost connection anyway, so the error is only logged; the
    consumer reconnects (to the next node of a fail-over AMQP_URI).
    """

    def ack_message(self, message):
        try:
            super().ack_message(message)
        except OSError as exc:
            log.warning("could not acknowledge a message, the broker connection is gone (%s); "
                        "RabbitMQ delivers it again", exc)

    def requeue_message(self, message):
        try:
            super().requeue_message(message)
        except OSError as exc:
            log.warning("could not requeue a message, the broker connection is gone (%s); "
                        "RabbitMQ requeues it itself", exc)


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

    A plain ``RpcProxy`` waits forever when the storage queue exists but no
    storage process consumes it; here every call raises ``Unavailable`` after
    ``RPC_TIMEOUT`` seconds, and the request itself expires on the broker so
    a late storage process does not act on calls nobody awaits any more.
    """

    rpc_reply_listener = FailoverReplyListener()

    def __init__(self, **options):
        super().__init__("storage", **options)

    def setup(self):
        self.timeout = Settings.from_config(self.container.config).rpc_timeout
        self.options.setdefault("expiration", self.timeout)
        # see TransientResponder: a request outliving a broker restart has no caller left
        self.options.setdefault("delivery_mode", NON_PERSISTENT)
        super().setup()

    def get_dependency(self, worker_ctx):
        return TimedServiceProxy(super().get_dependency(worker_ctx), self.timeout)


class TimedServiceProxy:
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


class JobDispatcher(EventDispatcher):
    """Dispatches ``gateway`` events that cannot be silently dropped.

    Publishes with confirms and ``mandatory``, after declaring the imaging job
    queue, so an accepted upload's job is on disk in RabbitMQ before the
    gateway answers 202.  Storage uses it too, to re-dispatch stalled jobs on
    the gateway's behalf.
    """

    def __init__(self, **options):
        options.setdefault("mandatory", True)
        super().__init__(**options)

    def setup(self):
        queues = topology.job_queues(self.container.config)
        declare_queues(self.container.config, queues)
        self.declare.extend(queues)
        super().setup()
        # Whoever dispatches, jobs are gateway events: that is what the
        # imaging queue is bound to and what operators dispatch from the shell.
        self.exchange = topology.job_exchange(self.container.config)
        self.publisher.exchange = self.exchange
        self.timeout = Settings.from_config(self.container.config).rpc_timeout

    def get_dependency(self, worker_ctx):
        dispatch = super().get_dependency(worker_ctx)

        def dispatch_within_deadline(event_type, event_data):
            publish_within_deadline(partial(dispatch, event_type, event_data), self.timeout, "job")

        return dispatch_within_deadline


def publish_within_deadline(publish, timeout, what):
    """Run ``publish()`` (a confirmed, mandatory publish); any broker failure is ``Unavailable``.

    Confirms and mandatory routing make a lost message an error; the deadline
    makes a broker that never confirms one too, instead of a hung worker.
    """
    deadline = eventlet.Timeout(timeout)
    try:
        publish()
    except eventlet.Timeout as exc:
        if exc is not deadline:
            raise
        raise Unavailable("the message broker did not confirm the {}".format(what)) from None
    except UndeliverableMessage:
        raise Unavailable("no queue accepted the {}".format(what)) from None
    except BROKER_ERRORS as exc:
        raise Unavailable("the message broker is unreachable ({})".format(
            type(exc).__name__)) from None
    finally:
        deadline.cancel()


class JobHandler(EventHandler):
    """``@event_handler`` for the imaging job queue.

    Jobs are acknowledged only after the handler returns.  The handler deals
    with every failure itself (retry or dead-letter); if it still raises --
    for instance because the broker vanished while it was scheduling a retry
    -- the job goes back to the queue instead of being acked and dropped,
    which is what plain ``@event_handler`` does.
    """

    queue_consumer = FailoverQueueConsumer()

    def __init__(self, source_service, event_type, **kwargs):
        kwargs.setdefault("requeue_on_error", True)
        super().__init__(source_service, event_type, **kwargs)

    def setup(self):
        config = self.container.config
        declare_queues(config, topology.job_queues(config))
        super().setup()
        # EventHandler declares a plain queue of the same name; consuming with
        # different arguments than the dispatchers declare would be refused.
        if self.queue.name != topology.JOB_QUEUE:
            raise RuntimeError("{} is not the job queue {}".format(self.queue.name, topology.JOB_QUEUE))
        self.queue = topology.job_queue(config)


job_handler = JobHandler.decorator


class EventSubscriber(EventHandler):
    """nameko's ``@event_handler`` on the fail-over-safe queue consumer."""

    queue_consumer = FailoverQueueConsumer()


event_subscriber = EventSubscriber.decorator


class _TransientPublisher(AmqpPublisher):
    delivery_mode = NON_PERSISTENT


class TransientResponder(Responder):
    """nameko's RPC reply, published as a transient message.

    nameko publishes every message persistent.  For RPC that buys nothing:
    a caller waits RPC_TIMEOUT at most, and after a broker restart its reply
    queue is gone anyway; a client whose call is lost gets an error and
    retries.  Persistence costs a lot, though: RabbitMQ writes persistent
    messages to its message store before confirming them, which for a
    3.5 MB original measured ~17-21 ms of broker CPU per message against
    6-7 ms transient.  Durability lives where it matters: blobs and catalog
    rows are on disk before storage answers, and jobs are persistent
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
        # RpcConsumer.handle_result with TransientResponder in place of Responder
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
    """``@rpc`` whose queue follows ``RPC_QUEUE_TYPE`` (classic or quorum)."""

    rpc_consumer = ConfiguredRpcConsumer()


rpc = ConfiguredRpc.decorator


class JobRetries(DependencyProvider):
    """Schedules failed jobs for a later attempt, or dead-letters them.

    ``retry(job, reason)`` publishes the job (with its attempt count) to the
    delay queue for that attempt and returns True; once the delays in
    ``JOB_RETRY_DELAYS`` are used up -- or at once with ``final=True`` -- it
    parks the job in the dead-letter queue and returns False.  Publishing is
    confirmed before the original delivery is acknowledged, so a job is never
    in neither queue.
    """

    def setup(self):
        config = self.container.config
        self.config = config
        self.delays = Settings.from_config(config).job_retry_delays
        self.amqp_uri = config[AMQP_URI_CONFIG_KEY]
        self.publisher = AmqpPublisher(
            self.amqp_uri, serializer=self.container.serializer, use_confirms=True,
            mandatory=True, exchange=topology.DEFAULT_EXCHANGE)
        self.queues = [topology.retry_queue(delay, config) for delay in self.delays]
        self.dead_letter_queue = topology.dead_letter_queue(config)
        declare_queues(config, [self.dead_letter_queue, *self.queues])

    def get_dependency(self, worker_ctx):
        return self

    def retry(self, job, reason, final=False):
        attempt = int(job.get("attempt") or 0) + 1
        if final or attempt > len(self.delays):
            self.publisher.publish(
                {"job": job, "error": reason, "attempts": attempt,
                 "dead_lettered_at": isoformat(time.time())},
                routing_key=topology.DEAD_LETTER_QUEUE,
                declare=[self.dead_letter_queue], serializer="json")
            return False
        queue = self.queues[attempt - 1]
        self.publisher.publish(
            dict(job, attempt=attempt), routing_key=queue.name,
            declare=[topology.job_exchange(self.config), queue])
        return True

    def dead_letters(self, limit=100):
        return deadletters.peek(self.amqp_uri, self.config, limit)

    def replay(self, limit=100, image_id=None):
        return deadletters.replay(self.amqp_uri, self.config, limit, image_id)


def declare_queues(config, queues):
    """Declare queues at start-up; stop the service if RabbitMQ refuses it."""
    with Connection(config[AMQP_URI_CONFIG_KEY], ssl=config.get(AMQP_SSL_CONFIG_KEY)) as conn:
        try:
            topology.declare_or_explain(conn, queues, config)
        except topology.QueueMismatch as exc:
            log.critical("%s", exc)
            raise


class ConfiguredTimer(Timer):
    """``@timer`` whose interval is read from config at start-up."""

    def __init__(self, config_key, default, **kwargs):
        super().__init__(interval=default, **kwargs)
        self.config_key = config_key

    def setup(self):
        self.interval = float(self.container.config.get(self.config_key) or self.interval)
        super().setup()


configured_timer = ConfiguredTimer.decorator
