"""Completion webhooks wired to RabbitMQ (the plain part is ``imagepipe.webhooks``).

Deliveries run in the gateway's ``deliver_webhook`` handler of imaging's
``image_processed`` events.  Its queue is the durable one nameko names
``evt-imaging-image_processed--gateway.deliver_webhook``, shared by every
gateway process, and a message is acknowledged only after the handler
returns: a gateway killed mid-delivery leaves the message for another one.

A failed POST is not retried by sleeping in the handler (that would hold a
worker and the unacked message for minutes): the handler publishes the
message, with its attempt count, to ``webhooks.retry.<delay>s``, a durable
queue whose TTL dead-letters it straight back to the delivery queue (through
the default exchange, so other listeners of ``image_processed`` never see
retries).  Waiting retries are on disk in RabbitMQ and survive any process.
The cost: each delay is a queue, and a message waits its full TTL behind
older ones of the same queue -- fine, since every message in one queue has
the same delay.
"""
import logging
from functools import partial

import eventlet
from kombu import Exchange, Queue
from nameko.amqp.publish import Publisher as AmqpPublisher
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.standalone.events import get_event_exchange

from imagepipe import api
from imagepipe.errors import InvalidCallbackUrl, NotFound, Unavailable
from imagepipe.settings import Settings
from imagepipe.webhooks import (
    WebhookSender, check_callback_url, deliver, next_attempt, retry_message, retry_state)
from services import topology
from services.dependencies import FailoverQueueConsumer, declare_queues, publish_within_deadline
from services.topology import PROCESSED_EVENT

log = logging.getLogger(__name__)

PROCESSED_SOURCE = "imaging"
DELIVERY_HANDLER = "gateway.deliver_webhook"
DELIVERY_QUEUE = "evt-{}-{}--{}".format(PROCESSED_SOURCE, PROCESSED_EVENT, DELIVERY_HANDLER)
DEFAULT_EXCHANGE = Exchange("", type="direct")


def delivery_queue(config):
    """The queue of ``gateway.deliver_webhook``: nameko's name, durable, shared.

    With ``JOB_QUEUE_TYPE: quorum`` it is a quorum queue like the job queues,
    so a waiting delivery survives the loss of a cluster node too.
    """
    quorum = topology._is_quorum(config)
    return Queue(
        DELIVERY_QUEUE, exchange=get_event_exchange(PROCESSED_SOURCE, config),
        routing_key=PROCESSED_EVENT, durable=True, auto_delete=False, exclusive=False,
        queue_arguments={"x-queue-type": "quorum"} if quorum else None)


def retry_queue_name(delay_seconds):
    return "webhooks.retry.{:g}s".format(delay_seconds)


def retry_queue(delay_seconds, config):
    name = retry_queue_name(delay_seconds)
    arguments = {
        "x-message-ttl": int(delay_seconds * 1000),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": DELIVERY_QUEUE,
    }
    if topology._is_quorum(config):
        arguments.update(topology._quorum_dead_lettering("", DELIVERY_QUEUE))
    return Queue(name, exchange=DEFAULT_EXCHANGE, routing_key=name, durable=True,
                 queue_arguments=arguments)


class WebhookHandler(EventHandler):
    """``@event_handler`` for ``image_processed`` on the delivery queue.

    Acknowledged only after the handler returns; if it raises (the broker
    vanished while a retry was being scheduled) the message goes back to the
    queue rather than being dropped.
    """

    queue_consumer = FailoverQueueConsumer()

    def __init__(self, source_service, event_type, **kwargs):
        kwargs.setdefault("requeue_on_error", True)
        super().__init__(source_service, event_type, **kwargs)

    def setup(self):
        config = self.container.config
        declare_queues(config, [delivery_queue(config)])
        super().setup()
        if self.queue.name != DELIVERY_QUEUE:
            raise RuntimeError("{} is not the webhook queue {}".format(self.queue.name, DELIVERY_QUEUE))
        self.queue = delivery_queue(config)  # with the configured queue type


webhook_handler = WebhookHandler.decorator


class Webhooks(DependencyProvider):
    """Vets callback URLs, delivers, and schedules retries."""

    def setup(self):
        config = self.container.config
        self.settings = Settings.from_config(config)
        self.sender = WebhookSender(
            timeout=self.settings.webhook_timeout, secret=self.settings.webhook_secret,
            allow_private=self.settings.webhook_allow_private)
        self.publisher = AmqpPublisher(
            config[AMQP_URI_CONFIG_KEY], serializer=self.container.serializer,
            use_confirms=True, mandatory=True, exchange=DEFAULT_EXCHANGE)
        self.delivery_queue = delivery_queue(config)
        self.retry_queues = {delay: retry_queue(delay, config)
                             for delay in self.settings.webhook_retry_delays}

    def get_dependency(self, worker_ctx):
        return self

    def check(self, url):
        """The vetted ``Target`` of an upload's callback URL (400 errors otherwise).

        The DNS lookup gets the RPC deadline: a slow resolver must not hold
        the upload (and a gateway worker) for its own, much longer, timeout.
        """
        deadline = eventlet.Timeout(self.settings.rpc_timeout)
        try:
            return check_callback_url(url, self.settings.webhook_allow_private)
        except eventlet.Timeout as exc:
            if exc is not deadline:
                raise
            raise InvalidCallbackUrl("callback_url host did not resolve within {:g} s".format(
                self.settings.rpc_timeout)) from None
        finally:
            deadline.cancel()

    def request_delivery(self, image_id, url):
        """Deliver now: a re-upload named a callback for an image already finished."""
        self._publish(retry_message(image_id, 0, url), self.delivery_queue)

    def handle(self, message, get_image):
        """One delivery message: POST, or schedule the next attempt, or give up."""
        image_id = message.get("id")
        if message.get("has_callback") is False:
            return None  # imaging says the finished image has no callback_url
        attempts, pinned_url = retry_state(message)
        delays = self.settings.webhook_retry_delays
        try:
            record = get_image(image_id)
        except NotFound:
            log.warning("webhook for unknown image %r dropped", image_id)
            return None
        except Unavailable as exc:
            decision = next_attempt(image_id, attempts, pinned_url, exc.message, delays)
        else:
            status_body = api.image_status(record, self.settings.public_url)
            decision = deliver(message, record, status_body, self.sender.send, delays)
        self._act(image_id, attempts, decision)
        return decision

    def _act(self, image_id, attempts, decision):
        if decision.outcome == "delivered":
            log.info("webhook for image %s delivered (attempt %d): %s",
                     image_id, attempts + 1, decision.detail)
        elif decision.outcome == "retry":
            log.warning("webhook for image %s failed (attempt %d): %s; retrying in %g s",
                        image_id, attempts + 1, decision.detail, decision.retry_delay)
            self._publish(decision.retry_message, self.retry_queues[decision.retry_delay])
        elif decision.outcome == "gave_up":
            log.error("webhook for image %s given up after %d attempts: %s",
                      image_id, attempts + 1, decision.detail)
        else:
            log.debug("webhook for image %s skipped: %s", image_id, decision.detail)

    def _publish(self, message, queue):
        publish_within_deadline(
            partial(self.publisher.publish, message, routing_key=queue.name, declare=[queue]),
            self.settings.rpc_timeout, "webhook")
