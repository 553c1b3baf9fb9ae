"""The job queue's other ways in: retries, re-dispatches and dead letters.

``JobQueue`` is the provider imaging and storage use; the dead-letter reading
below it is plain kombu.  Two kinds of dead letter live in the dead-letter
queue: those imaging parks after its retries (JSON ``{"job", "error",
"attempts", ...}``) and, with quorum queues, jobs RabbitMQ moved there itself
when they hit the delivery limit (the original job, with an ``x-death``
header saying why); both are listed and replayed alike.
"""
import time
from datetime import timezone

from kombu import Connection, Producer
from nameko.constants import AMQP_URI_CONFIG_KEY, PERSISTENT
from nameko.extensions import DependencyProvider

from imagepipe.records import isoformat
from imagepipe.settings import Settings
from services import topology
from services.extensions.amqp import QueuePublisher, declare_queues, ready_messages


class JobQueue(DependencyProvider):
    """Jobs that are not new uploads: retries after a delay, re-dispatches, dead letters.

    ``retry(job, reason)`` publishes the job (with its attempt count) to the
    delay queue for that attempt and returns True; once the delays in
    ``JOB_RETRY_DELAYS`` are used up -- or at once with ``final=True`` -- it
    parks the job in the dead-letter queue and returns False.  Publishing is
    confirmed before the original delivery is acknowledged, so a job is never
    in neither queue.  ``redispatch(job)`` puts a job straight back on the job
    queue (the storage sweeper's heal for a lost one).
    """

    def setup(self):
        config = self.container.config
        self.config = config
        settings = Settings.from_config(config)
        self.delays = settings.job_retry_delays
        self.publisher = QueuePublisher(config, self.container.serializer, settings.rpc_timeout)
        self.job_queue = topology.job_queue(config)
        self.retry_queues = [topology.job_retry_queue(delay, config) for delay in self.delays]
        self.dead_letter_queue = topology.dead_letter_queue(config)
        declare_queues(config, [self.dead_letter_queue, self.job_queue, *self.retry_queues])

    def get_dependency(self, worker_ctx):
        return self

    def retry(self, job, reason, final=False):
        attempt = int(job.get("attempt") or 0) + 1
        if final or attempt > len(self.delays):
            self.publisher.publish(
                {"job": job, "error": reason, "attempts": attempt,
                 "dead_lettered_at": isoformat(time.time())},
                self.dead_letter_queue, "dead letter", serializer="json")
            return False
        self.publisher.publish(dict(job, attempt=attempt), self.retry_queues[attempt - 1], "retry")
        return True

    def redispatch(self, job):
        self.publisher.publish(job, self.job_queue, "job")

    def waiting(self):
        return ready_messages(self.config, self.job_queue)

    def dead_letters(self, limit=100):
        return peek_dead_letters(self.config, limit)

    def replay(self, limit=100, image_id=None):
        return replay_dead_letters(self.config, limit, image_id)


def peek_dead_letters(config, limit=100):
    """Up to ``limit`` dead letters, described, left in the queue.

    Read without acknowledging: closing the channel hands every message back.
    """
    with Connection(config[AMQP_URI_CONFIG_KEY]) as conn:
        channel = conn.channel()
        try:
            queue = topology.dead_letter_queue(config)(channel)
            queue.declare()
            return [_describe(message) for message in _get_many(queue, limit)]
        finally:
            channel.close()


def replay_dead_letters(config, limit=100, image_id=None):
    """Put dead-lettered jobs (all, or one image's) back on the job queue; return their ids.

    Each goes back with its attempt count reset and ``reprocess`` set (so an
    image marked failed when it was dead-lettered is tried again), and is
    acknowledged only after the broker has confirmed the new job.
    """
    replayed = []
    with Connection(config[AMQP_URI_CONFIG_KEY], transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        try:
            queue = topology.dead_letter_queue(config)(channel)
            queue.declare()
            job_queue = topology.job_queue(config)
            producer = Producer(channel, exchange=topology.DEFAULT_EXCHANGE)
            for message in _get_many(queue, limit):
                job = dict(_describe(message)["job"] or {})
                if image_id is not None and job.get("id") != image_id:
                    continue  # left unacknowledged: back in the queue on close
                job.pop("attempt", None)
                job["reprocess"] = True  # an explicit retry also restarts a failed image
                producer.publish(
                    job, routing_key=job_queue.name, delivery_mode=PERSISTENT,
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
