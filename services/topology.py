"""The AMQP queues of the image jobs, declared identically by every party.

The job queue is the durable queue nameko's ``@event_handler`` would create
for ``imaging.handle_image_uploaded``.  The gateway declares it too before it
publishes, so an upload accepted before any imaging process has ever started
is queued, not dropped by an exchange with nothing bound to it.

Retries wait in one queue per back-off delay; when a message's TTL runs out
RabbitMQ dead-letters it back onto the events exchange as a fresh
``image_uploaded`` event.  Jobs that exhaust their retries are parked in the
dead-letter queue for an operator to inspect and replay.
"""
from kombu import Exchange, Queue
from nameko.standalone.events import get_event_exchange

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
    return Queue(
        JOB_QUEUE, exchange=job_exchange(config), routing_key=JOB_EVENT,
        durable=True, auto_delete=False, exclusive=False,
    )


def retry_queue_name(delay_seconds):
    return "imaging.retry.{:g}s".format(delay_seconds)


def retry_queue(delay_seconds):
    return Queue(
        retry_queue_name(delay_seconds), exchange=DEFAULT_EXCHANGE,
        routing_key=retry_queue_name(delay_seconds), durable=True,
        queue_arguments={
            "x-message-ttl": int(delay_seconds * 1000),
            "x-dead-letter-exchange": "{}.events".format(JOB_SOURCE),
            "x-dead-letter-routing-key": JOB_EVENT,
        },
    )


def dead_letter_queue():
    return Queue(
        DEAD_LETTER_QUEUE, exchange=DEFAULT_EXCHANGE,
        routing_key=DEAD_LETTER_QUEUE, durable=True,
    )
