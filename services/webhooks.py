"""Webhooks: POSTs a finished image's status to its ``callback_url``.

Handles imaging's ``image_processed`` events from one durable queue shared
by every webhooks process; a message is acknowledged only after the handler
returns, so a process killed mid-delivery leaves it for another one.  Outbound
HTTP to strangers' servers runs here, in a service of its own, never in the
gateway's HTTP workers: the gateway only publishes a small message when a
re-upload names a callback for a finished image.  Each (image, URL, outcome)
is delivered once (a ledger in storage), at most ``WEBHOOK_MAX_PER_HOST`` at
once per host; the rest wait in RabbitMQ.
"""
from services import topology
from services.extensions.events import queue_handler
from services.extensions.observability import LogContext, Metrics
from services.extensions.providers import Config, WebhookDeliveries
from services.extensions.rpc import StorageRpc


class WebhookService:
    name = "webhooks"

    config = Config()
    storage = StorageRpc()
    deliveries = WebhookDeliveries()
    metrics = Metrics()
    log_context = LogContext()

    @queue_handler(topology.DELIVERY_QUEUE)
    def deliver(self, message):
        self.deliveries.handle(message, self.storage)
