"""Operator access to the imaging dead-letter queue (plain kombu).

``peek`` reads without acknowledging (closing the channel hands every message
back to the queue); ``replay`` re-dispatches jobs as fresh ``image_uploaded``
events with their attempt count reset and ``reprocess`` set (so an image
marked failed when it was dead-lettered is tried again), acknowledging each
one only after the broker has confirmed the new event.  Two kinds of dead
letter live in the queue: those imaging parks after its retries (JSON
``{"job", "error", "attempts", ...}``) and, with quorum queues, jobs RabbitMQ
moved there itself when they hit the delivery limit (the original event, with
an ``x-death`` header saying why); both are listed and replayed alike.
"""
from datetime import timezone

from kombu import Connection, Producer
from nameko.constants import PERSISTENT

from imagepipe.catalog import isoformat
from services import topology


def peek(amqp_uri, config, limit=100):
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        try:
            queue = topology.dead_letter_queue(config)(channel)
            queue.declare()
            return [_describe(message) for message in _get_many(queue, limit)]
        finally:
            channel.close()


def replay(amqp_uri, config, limit=100, image_id=None):
    """Re-dispatch dead-lettered jobs (all, or one image's); return their ids."""
    replayed = []
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        try:
            queue = topology.dead_letter_queue(config)(channel)
            queue.declare()
            job_queue = topology.job_queue(config)
            producer = Producer(channel, exchange=topology.job_exchange(config))
            for message in _get_many(queue, limit):
                job = dict(_describe(message)["job"] or {})
                if image_id is not None and job.get("id") != image_id:
                    continue  # left unacknowledged: back in the queue on close
                job.pop("attempt", None)
                job["reprocess"] = True  # an explicit retry also restarts a failed image
                producer.publish(
                    job, routing_key=topology.JOB_EVENT, delivery_mode=PERSISTENT,
                    serializer="json", declare=[job_queue])
                message.ack()
                replayed.append(job.get("id"))
        finally:
            channel.close()
    return replayed


def _get_many(queue, limit):
    messages = []
    while len(messages) < limit:
        # msgpack: jobs RabbitMQ dead-lettered itself are the original event
        message = queue.get(no_ack=False, accept=["json", "msgpack"])
        if message is None:
            break
        messages.append(message)
    return messages


def _describe(message):
    payload = message.payload
    deaths = (message.headers or {}).get("x-death")
    if deaths and "job" not in payload:
        return _describe_broker_dead_letter(payload, deaths[0])
    return {
        "job": payload.get("job"),
        "error": payload.get("error"),
        "attempts": payload.get("attempts"),
        "dead_lettered_at": payload.get("dead_lettered_at"),
    }


def _describe_broker_dead_letter(job, death):
    """A job RabbitMQ dead-lettered itself (a quorum queue's delivery limit)."""
    reason = death.get("reason")
    if reason == "delivery_limit":
        error = ("RabbitMQ dead-lettered the job: delivered more than JOB_DELIVERY_LIMIT "
                 "times without being acknowledged (did it crash its worker?)")
    else:
        error = "RabbitMQ dead-lettered the job from {} ({})".format(death.get("queue"), reason)
    when = death.get("time")
    return {
        "job": job,
        "error": error,
        "attempts": None,
        # AMQP timestamps are whole seconds in UTC
        "dead_lettered_at": isoformat(when.replace(tzinfo=timezone.utc).timestamp()) if when else None,
    }
