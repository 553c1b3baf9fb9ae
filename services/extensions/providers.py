"""Dependency providers: the resources the services are given.

Each wraps a plain ``imagepipe`` object, so ``worker_factory`` can swap it in
unit tests and the services themselves stay declarative.
"""
import logging

import eventlet
from nameko.extensions import DependencyProvider

from imagepipe import heap
from imagepipe.errors import InvalidCallbackUrl, NotFound, Unavailable
from imagepipe.observability import metrics
from imagepipe.rendering.pool import RenderPool
from imagepipe.settings import Settings
from imagepipe.web import api
from imagepipe.webhooks.delivery import (
    WebhookSender, deliver, next_attempt, retry_message, retry_state)
from imagepipe.webhooks.urls import check_callback_url
from services import topology
from services.extensions.amqp import QueuePublisher

log = logging.getLogger(__name__)


class Config(DependencyProvider):
    """The parsed, validated ``config.yaml`` (an ``imagepipe.settings.Settings``).

    Also the process's start-up hook, which nameko does not have: every
    service declares ``Config``, so its ``setup`` tunes the heap for
    image-sized buffers (``imagepipe.heap``) before any image arrives.
    """

    def setup(self):
        heap.keep_big_buffers_on_heap()
        self.settings = Settings.from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings


class ImageStoreProvider(DependencyProvider):
    """The storage service's ``ImageStore`` (blobs and catalog), metered."""

    def setup(self):
        # imported here: SQLAlchemy and Alembic are two thirds of what an
        # imaging process would import at start-up (a cold start's largest part)
        from imagepipe.storage.store import ImageStore

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

    def start(self):
        self.pool.start_workers(1)  # ready for the first job

    def stop(self):
        self.pool.close()

    def kill(self):
        self.pool.close()

    def get_dependency(self, worker_ctx):
        return self.pool.render


class CallbackUrls(DependencyProvider):
    """The gateway's side of webhooks: vet an upload's callback URL, or ask for a delivery now."""

    def setup(self):
        config = self.container.config
        self.settings = Settings.from_config(config)
        self.publisher = QueuePublisher(config, self.container.serializer, self.settings.rpc_timeout)
        self.delivery_queue = topology.delivery_queue(config)

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
        self.publisher.publish(retry_message(image_id, 0, url), self.delivery_queue, "webhook")


class WebhookDeliveries(DependencyProvider):
    """The webhook service's side: POST, or schedule the next attempt, or give up.

    A failed POST is not retried by sleeping in the handler (that would hold
    a worker and the unacked message for minutes): the message, with its
    attempt count, goes to ``webhooks.deliveries.retry.<delay>s``, whose TTL sends it
    back to the delivery queue.  Waiting retries are on disk in RabbitMQ and
    survive any process.
    """

    def setup(self):
        config = self.container.config
        self.settings = Settings.from_config(config)
        self.sender = WebhookSender(
            timeout=self.settings.webhook_timeout, secret=self.settings.webhook_secret,
            allow_private=self.settings.webhook_allow_private)
        self.publisher = QueuePublisher(config, self.container.serializer, self.settings.rpc_timeout)
        self.retry_queues = {delay: topology.delivery_retry_queue(delay, config)
                             for delay in self.settings.webhook_retry_delays}

    def get_dependency(self, worker_ctx):
        return self

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
        self.publisher.publish(message, queue, "webhook retry")
