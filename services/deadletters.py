"""Operator access to the imaging dead-letter queue (plain kombu).

``peek`` reads without acknowledging (closing the channel hands every message
back to the queue); ``replay`` re-dispatches jobs as fresh ``image_uploaded``
events with their attempt count reset and ``reprocess`` set (so an image
marked failed when it was dead-lettered is tried again), acknowledging each
one only after the broker has confirmed the new event.
"""
from kombu import Connection, Producer
from nameko.constants import PERSISTENT

from services import topology


def peek(amqp_uri, limit=100):
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        try:
            queue = topology.dead_letter_queue()(channel)
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
            queue = topology.dead_letter_queue()(channel)
            queue.declare()
            producer = Producer(channel, exchange=topology.job_exchange(config))
            for message in _get_many(queue, limit):
                job = dict(message.payload.get("job") or {})
                if image_id is not None and job.get("id") != image_id:
                    continue  # left unacknowledged: back in the queue on close
                job.pop("attempt", None)
                job["reprocess"] = True  # an explicit retry also restarts a failed image
                producer.publish(
                    job, routing_key=topology.JOB_EVENT, delivery_mode=PERSISTENT,
                    serializer="json", declare=[topology.job_queue(config)])
                message.ack()
                replayed.append(job.get("id"))
        finally:
            channel.close()
    return replayed


def _get_many(queue, limit):
    messages = []
    while len(messages) < limit:
        message = queue.get(no_ack=False, accept=["json"])
        if message is None:
            break
        messages.append(message)
    return messages


def _describe(message):
    payload = message.payload
    return {
        "job": payload.get("job"),
        "error": payload.get("error"),
        "attempts": payload.get("attempts"),
        "dead_lettered_at": payload.get("dead_lettered_at"),
    }
