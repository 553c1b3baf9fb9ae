"""The AMQP queues of the image jobs, declared identically by every party.

The job queue is the durable queue nameko's ``@event_handler`` would create
for ``imaging.handle_image_uploaded``.  The gateway declares it too before it
publishes, so an upload accepted before any imaging process has ever started
is queued, not dropped by an exchange with nothing bound to it.

Retries wait in one queue per back-off delay; when a message's TTL runs out
RabbitMQ dead-letters it back onto the events exchange as a fresh
``image_uploaded`` event.  Jobs that exhaust their retries are parked in the
dead-letter queue for an operator to inspect and replay.

``JOB_QUEUE_TYPE: quorum`` makes these three kinds of queue quorum queues
(replicated over a cluster's nodes by Raft).  The job queue then also has a
delivery limit: a job handed out ``JOB_DELIVERY_LIMIT`` + 1 times without
being acknowledged -- its worker died every time -- is dead-lettered by
RabbitMQ itself into the dead-letter queue.  Dead-lettering from quorum queues
(delivery limit, retry TTL) is at-least-once: RabbitMQ keeps the message until
the target queue has confirmed it, which it only does for queues whose
overflow is ``reject-publish``.  With ``classic`` the queues are declared
exactly as before, so existing deployments see no change.
"""
import time

from kombu import Exchange, Queue
from nameko.standalone.events import get_event_exchange

from imagepipe.settings import Settings

JOB_SOURCE = "gateway"
JOB_EVENT = "image_uploaded"
PROCESSED_EVENT = "image_processed"
JOB_HANDLER = "imaging.handle_image_uploaded"
JOB_QUEUE = "evt-{}-{}--{}".format(JOB_SOURCE, JOB_EVENT, JOB_HANDLER)
DEAD_LETTER_QUEUE = "imaging.dead-letters"

DEFAULT_EXCHANGE = Exchange("", type="direct")


def job_exchange(config):
    return get_event_exchange(JOB_SOURCE, config)


def job_queue(config):
    settings = Settings.from_config(config)
    arguments = {}
    if settings.job_queue_type == "quorum":
        arguments = dict(
            _quorum_dead_lettering("", DEAD_LETTER_QUEUE),
            **{"x-delivery-limit": settings.job_delivery_limit})
    return Queue(
        JOB_QUEUE, exchange=job_exchange(config), routing_key=JOB_EVENT,
        durable=True, auto_delete=False, exclusive=False,
        queue_arguments=arguments or None,
    )


def job_queues(config):
    """The queues a job publisher declares: the job queue and where it dead-letters to."""
    return [dead_letter_queue(config), job_queue(config)]


def retry_queue_name(delay_seconds):
    return "imaging.retry.{:g}s".format(delay_seconds)


def retry_queue(delay_seconds, config):
    arguments = {
        "x-message-ttl": int(delay_seconds * 1000),
        "x-dead-letter-exchange": "{}.events".format(JOB_SOURCE),
        "x-dead-letter-routing-key": JOB_EVENT,
    }
    if _is_quorum(config):
        arguments.update(_quorum_dead_lettering(
            arguments["x-dead-letter-exchange"], arguments["x-dead-letter-routing-key"]))
    return Queue(
        retry_queue_name(delay_seconds), exchange=DEFAULT_EXCHANGE,
        routing_key=retry_queue_name(delay_seconds), durable=True,
        queue_arguments=arguments,
    )


def dead_letter_queue(config):
    # No delivery limit here: reading dead letters without acknowledging them
    # (``deadletters.peek``) returns them, and a limit would drop them.
    return Queue(
        DEAD_LETTER_QUEUE, exchange=DEFAULT_EXCHANGE,
        routing_key=DEAD_LETTER_QUEUE, durable=True,
        queue_arguments={"x-queue-type": "quorum"} if _is_quorum(config) else None,
    )


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


def rpc_queue(queue, config):
    """nameko's RPC queue ``queue`` (``rpc-<service>``), quorum if RPC_QUEUE_TYPE says so."""
    if Settings.from_config(config).rpc_queue_type != "quorum":
        return queue
    return Queue(queue.name, exchange=queue.exchange, routing_key=queue.routing_key,
                 durable=True, queue_arguments={"x-queue-type": "quorum"})


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
    from amqp.exceptions import NotFound, PreconditionFailed

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
        "imaging.retry.* and {dlq}, after saving any dead letters), then start the "
        "services with the new setting. See 'Scaling out' in README.md."
    ).format(queue=queue_name, type=settings.job_queue_type,
             limit=settings.job_delivery_limit, rpc=settings.rpc_queue_type,
             reply=broker_reply, dlq=DEAD_LETTER_QUEUE)
