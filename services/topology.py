"""Every exchange and queue of the pipeline, declared identically by every party.

::

    gateway ──image_uploaded──► gateway.events ──► imaging.jobs ──► imaging
    (nameko event, or n.dispatch_event        ▲  (durable, shared by    │ fails
     in nameko shell)                         │   every imaging process) │
    storage sweeper, reprocess, dead letters ─┤ (default exchange)       │
                                              │                          ▼
                     imaging.jobs.retry.<delay>s ◄─────── retry ──── JobQueue
                     (TTL, then back to imaging.jobs)    give up ──► imaging.dead-letters

    imaging ──image_processed──► imaging.events ──┬───────────────► webhooks.deliveries ──► webhooks
    storage ──image_deleted────► storage.events ──┤   (both events)     ▲                    │ fails
                                                  │   webhooks.deliveries.retry.<delay>s ◄──┘
                                                  │   (TTL, then back to webhooks.deliveries)
                                                  └──► evt-<source>-<event>--gateway.<event>
                                                       (auto-delete, one per gateway process and
                                                        event: they wake live status streams)

    rpc-storage, rpc-imaging: nameko's RPC queues (RPC_QUEUE_TYPE), on nameko-rpc.

The job queue is a named durable queue bound to the gateway's
``image_uploaded`` events, so the gateway (and an operator in ``nameko
shell``) dispatches plain nameko events.  Everyone who declares the queue
declares it the same way -- the gateway before it publishes, so an upload
accepted before any imaging process has ever started is queued, not dropped
by an exchange with nothing bound to it.  Jobs that are not new uploads --
retries after their delay, the storage sweeper's re-dispatches, replayed dead
letters -- go straight to the queue through the default exchange, so other
listeners of ``image_uploaded`` see only uploads.

``JOB_QUEUE_TYPE: quorum`` makes the job, retry, dead-letter and webhook
queues quorum queues (replicated over a cluster's nodes by Raft).  The job
queue then also has a delivery limit: a job handed out ``JOB_DELIVERY_LIMIT``
+ 1 times without being acknowledged -- its worker died every time -- is
dead-lettered by RabbitMQ itself into the dead-letter queue.  Dead-lettering
from quorum queues (delivery limit, retry TTL) is at-least-once: RabbitMQ
keeps the message until the target queue has confirmed it, which it only
does for queues whose overflow is ``reject-publish``.  With ``classic`` the
queues are plain durable queues.
"""
import logging
import time

from amqp.exceptions import ChannelError, NotFound, PreconditionFailed
from kombu import Exchange, Producer, Queue, binding
from nameko.standalone.events import get_event_exchange

from imagepipe.settings import Settings

log = logging.getLogger(__name__)

JOB_SOURCE = "gateway"
JOB_EVENT = "image_uploaded"
PROCESSED_SOURCE = "imaging"
PROCESSED_EVENT = "image_processed"
DELETED_SOURCE = "storage"
DELETED_EVENT = "image_deleted"

JOB_QUEUE = "imaging.jobs"
DEAD_LETTER_QUEUE = "imaging.dead-letters"
DELIVERY_QUEUE = "webhooks.deliveries"

DEFAULT_EXCHANGE = Exchange("", type="direct")


def job_queue(config):
    arguments = {}
    if _is_quorum(config):
        arguments = dict(
            _quorum_dead_lettering("", DEAD_LETTER_QUEUE),
            **{"x-delivery-limit": Settings.from_config(config).job_delivery_limit})
    return Queue(
        JOB_QUEUE, exchange=get_event_exchange(JOB_SOURCE, config), routing_key=JOB_EVENT,
        durable=True, queue_arguments=arguments or None)


def job_queues(config):
    """The queues a job publisher declares: the job queue and where it dead-letters to."""
    return [dead_letter_queue(config), job_queue(config)]


def job_retry_queue(delay_seconds, config):
    return _retry_queue(_retry_queue_name(JOB_QUEUE, delay_seconds), delay_seconds, JOB_QUEUE, config)


def dead_letter_queue(config):
    # No delivery limit here: reading dead letters without acknowledging them
    # (``peek_dead_letters``) returns them, and a limit would drop them.
    return Queue(
        DEAD_LETTER_QUEUE, exchange=DEFAULT_EXCHANGE, routing_key=DEAD_LETTER_QUEUE, durable=True,
        queue_arguments={"x-queue-type": "quorum"} if _is_quorum(config) else None)


def delivery_queue(config):
    """The webhook service's queue of ``image_processed`` and ``image_deleted`` events,
    shared by its processes.  (A binding added to a queue that exists is just added.)"""
    return Queue(
        DELIVERY_QUEUE, bindings=[
            binding(get_event_exchange(PROCESSED_SOURCE, config), routing_key=PROCESSED_EVENT),
            binding(get_event_exchange(DELETED_SOURCE, config), routing_key=DELETED_EVENT)],
        durable=True, queue_arguments={"x-queue-type": "quorum"} if _is_quorum(config) else None)


def delivery_retry_queue(delay_seconds, config):
    return _retry_queue(_retry_queue_name(DELIVERY_QUEUE, delay_seconds), delay_seconds,
                        DELIVERY_QUEUE, config)


def consumed_queue(name, config):
    """The work queue called ``name`` as configured: what ``@queue_handler(name)`` consumes."""
    return {JOB_QUEUE: job_queue, DELIVERY_QUEUE: delivery_queue}[name](config)


def rpc_queue(queue, config):
    """nameko's RPC queue ``queue`` (``rpc-<service>``), quorum if RPC_QUEUE_TYPE says so."""
    if Settings.from_config(config).rpc_queue_type != "quorum":
        return queue
    return Queue(queue.name, exchange=queue.exchange, routing_key=queue.routing_key,
                 durable=True, queue_arguments={"x-queue-type": "quorum"})


def _retry_queue_name(queue_name, delay_seconds):
    return "{}.retry.{:g}s".format(queue_name, delay_seconds)


def _retry_queue(name, delay_seconds, back_to, config):
    """A queue where messages wait ``delay_seconds``, then go back to queue ``back_to``.

    Each delay is a queue of its own: a message waits its full TTL behind
    older ones of the same queue, which is fine when all have one delay.
    """
    arguments = {
        "x-message-ttl": int(delay_seconds * 1000),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": back_to,
    }
    if _is_quorum(config):
        arguments.update(_quorum_dead_lettering("", back_to))
    return Queue(name, exchange=DEFAULT_EXCHANGE, routing_key=name, durable=True,
                 queue_arguments=arguments)


def _is_quorum(config):
    return Settings.from_config(config).job_queue_type == "quorum"


def _quorum_dead_lettering(exchange, routing_key):
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": routing_key,
        "x-dead-letter-strategy": "at-least-once",
        # at-least-once dead-lettering is refused with any other overflow mode
        "x-overflow": "reject-publish",
    }


def legacy_queue_names(queue_name, config):
    """What an earlier release (before 0.2) called the work queue ``queue_name`` and its retries.

    The job and webhook queues had nameko's generated event handler names,
    and their retry queues dead-lettered elsewhere.  ``retire_legacy_queues``
    empties them into the new work queue.
    """
    settings = Settings.from_config(config)
    if queue_name == JOB_QUEUE:
        return ["evt-gateway-image_uploaded--imaging.handle_image_uploaded"] + [
            "imaging.retry.{:g}s".format(delay) for delay in settings.job_retry_delays]
    if queue_name == DELIVERY_QUEUE:
        return ["evt-imaging-image_processed--gateway.deliver_webhook"] + [
            "webhooks.retry.{:g}s".format(delay) for delay in settings.webhook_retry_delays]
    return []


def retire_legacy_queues(connection, queue, config):
    """Move what an earlier release's queues for ``queue`` hold into it, then delete them.

    Left alone, an old work queue would stay bound to its events and fill up
    forever with nobody consuming it, and messages waiting in any of them
    would be stranded.  A retry waiting in an old retry queue is moved too,
    so it is tried early rather than never.  ``connection`` must confirm
    publishes: each message is acknowledged on the old queue only once the
    new one has it.  Returns how many messages moved.
    """
    return sum(_retire(connection, name, queue) for name in legacy_queue_names(queue.name, config))


def _retire(connection, legacy_name, queue):
    channel = connection.channel()
    try:
        legacy = Queue(legacy_name, channel=channel)
        try:
            legacy.queue_declare(passive=True)
        except NotFound:
            return 0  # nothing to retire (the usual case)
        producer = Producer(channel, exchange=DEFAULT_EXCHANGE)
        moved = 0
        try:
            while True:
                message = legacy.get(no_ack=False, accept=["json", "msgpack"])
                if message is None:
                    break
                producer.publish(
                    message.body, routing_key=queue.name, headers=message.headers,
                    content_type=message.content_type, content_encoding=message.content_encoding,
                    delivery_mode=2, mandatory=True, declare=[queue])
                message.ack()
                moved += 1
            legacy.delete(if_empty=True)
        except ChannelError as exc:
            # another process is retiring it at the same moment; it finishes the job
            log.info("queue %s is being retired elsewhere (%s)", legacy_name, exc)
        log.warning("retired queue %s of an earlier release: moved %d messages to %s",
                    legacy_name, moved, queue.name)
        return moved
    finally:
        if channel.is_open:
            channel.close()


class QueueMismatch(RuntimeError):
    """A queue exists with another type or other arguments than configured."""


def declare_or_explain(connection, queues, config, settle_seconds=5.0):
    """Declare ``queues``; a PRECONDITION_FAILED becomes a ``QueueMismatch`` saying what to do.

    RabbitMQ cannot change a live queue's type or arguments, so switching
    ``JOB_QUEUE_TYPE`` (or ``JOB_DELIVERY_LIMIT``) on a running system is
    refused at the first declaration; services call this at start-up so the
    refusal stops them with instructions instead of failing the first upload.

    A NOT_FOUND "home node ... of durable queue ... is down or inaccessible"
    is retried for ``settle_seconds``: RabbitMQ 3.10 also answers it to one of
    two processes declaring a new durable queue at the same moment (gateway,
    storage and imaging all declare the job queues when they start together),
    and the queue is there a moment later.  A home node that really is down
    still fails the declaration once the time is up.
    """
    for queue in queues:
        deadline = time.monotonic() + settle_seconds
        while True:
            channel = connection.channel()
            try:
                queue(channel).declare()
                break
            except PreconditionFailed as exc:
                raise QueueMismatch(mismatch_advice(queue.name, exc, config)) from None
            except NotFound as exc:
                if "down or inaccessible" not in str(exc) or time.monotonic() > deadline:
                    raise
            finally:
                if channel.is_open:
                    channel.close()
            time.sleep(0.2)


def mismatch_advice(queue_name, broker_reply, config):
    settings = Settings.from_config(config)
    return (
        "RabbitMQ refused to declare queue {queue!r} as configured "
        "(JOB_QUEUE_TYPE={type}, JOB_DELIVERY_LIMIT={limit}, RPC_QUEUE_TYPE={rpc}): {reply}. "
        "A queue's type and arguments cannot change while it exists. Either set "
        "the setting back to what the queue is, or migrate: stop every gateway, "
        "storage and imaging process, let the queues drain, delete the queue "
        "(rabbitmqctl delete_queue {queue} -p <vhost>; for the job queue also "
        "imaging.jobs.retry.* and {dlq}, after saving any dead letters), then start the "
        "services with the new setting. See 'Scaling out' in README.md."
    ).format(queue=queue_name, type=settings.job_queue_type,
             limit=settings.job_delivery_limit, rpc=settings.rpc_queue_type,
             reply=broker_reply, dlq=DEAD_LETTER_QUEUE)
