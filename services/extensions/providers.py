"""Dependency providers: the resources the services are given.

Each wraps a plain ``imagepipe`` object, so ``worker_factory`` can swap it in
unit tests and the services themselves stay declarative.
"""
import logging
import os
import threading

import eventlet
from nameko.extensions import DependencyProvider

from imagepipe import heap
from imagepipe.errors import NotFound, Unavailable, UnresolvableCallbackHost
from imagepipe.observability import metrics
from imagepipe.rendering.pool import RenderPool
from imagepipe.settings import Settings
from imagepipe.storage.direct import STORE_ID_FILE, DirectBlobs
from imagepipe.web import api
from imagepipe.webhooks.delivery import (
    WAIT_SECONDS, Decision, HostSlots, WebhookSender, deliver, deliver_deletion, next_attempt,
    retry_message, retry_state)
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

    The pool bounds each render in time (a budget per megapixel) and memory,
    survives decoder crashes and runs its workers sandboxed; the service's
    event loop only waits on sockets, so it keeps serving AMQP heartbeats
    while every core renders.
    """

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.pool = RenderPool(
            size=settings.render_workers, timeout=settings.render_timeout,
            memory_limit_mb=settings.render_memory_mb, nice=settings.render_nice,
            render_kwargs={"formats": settings.allowed_formats, "max_pixels": settings.max_pixels,
                           "animation_limits": settings.animation_limits},
            seconds_per_megapixel=settings.render_seconds_per_megapixel,
            seconds_min=settings.render_seconds_min, decode_limits=settings.decode_limits,
            sandbox=settings.render_sandbox)

    def start(self):
        # One worker starts beside the service's own start-up (it waits for
        # the worker's hello in a green thread), not on the first job: off a
        # cold start's path.
        self.container.spawn_managed_thread(self._start_worker)

    def _start_worker(self):
        try:
            self.pool.start_worker()
        except Exception as exc:  # the first job tries again, and says why if it fails
            log.warning("could not start a render worker ahead of the first job: %s", exc)

    def stop(self):
        self.pool.close()

    def kill(self):
        self.pool.close()

    def get_dependency(self, worker_ctx):
        return self.pool.render


class BlobAccess(DependencyProvider):
    """The claim-check path for the gateway and imaging: direct blob access, or None.

    Decided from this process's view of the store (a shared ``STORAGE_ROOT``
    that storage has marked, or S3 with presigned URLs) and confirmed with
    storage (``storage.blob_access``) that both mean the same store; logged
    once.  A process that starts before storage has marked the shared folder
    decides at its first upload or job instead of at start-up.  Where there
    is no direct access the bytes travel over RPC.
    """

    def setup(self):
        self.settings = Settings.from_config(self.container.config)
        self.direct = None
        self._decided = False
        self._lock = threading.Lock()
        if self._can_look_now():
            self.direct, why = self._look()
            self._decided = self.direct is None  # a candidate still needs storage's word
            self._announce(why)
        else:
            log.info("%s: %s is not storage's folder yet; how image bytes travel is decided "
                     "at the first upload or job", self.container.service_name,
                     self.settings.storage_root)

    def get_dependency(self, worker_ctx):
        return self

    def direct_for(self, storage):
        """The ``DirectBlobs`` to use, or None for bytes over RPC; ``storage`` is an RPC proxy."""
        if not self._decided:
            with self._lock:
                if not self._decided:
                    self._decide(storage.blob_access())
        return self.direct

    def _can_look_now(self):
        settings = self.settings
        return (settings.blob_access == "rpc" or settings.blobs.is_s3
                or os.path.exists(os.path.join(settings.storage_root, STORE_ID_FILE)))

    def _look(self):
        settings = self.settings
        return DirectBlobs.for_process(settings.blobs, settings.storage_root, settings.blob_access,
                                       settings.rpc_timeout)

    def _decide(self, access):
        announce = self.direct is None
        if announce:
            self.direct, why = self._look()
        if self.direct is not None and not self.direct.serves(access):
            why = "storage uses another store ({}) than the one seen here".format(access)
            self.direct, announce = None, True
        if announce:
            self._announce(why)
        self._decided = True

    def _announce(self, why):
        log.info("%s: image bytes %s (%s)", self.container.service_name,
                 "go directly to the blob store" if self.direct else "travel over RPC", why)


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
            return check_callback_url(url, self.settings.webhook_allow_private,
                                      allowed_ports=self.settings.webhook_allowed_ports)
        except eventlet.Timeout as exc:
            if exc is not deadline:
                raise
            # the same answer as for a name that does not resolve at all
            raise UnresolvableCallbackHost(
                "callback_url host is not a public internet address; only public addresses "
                "are allowed") from None
        finally:
            deadline.cancel()

    def request_delivery(self, image_id, url):
        """Deliver now: a re-upload named a callback for an image already finished.

        Asking again is harmless: the webhooks service delivers each (image,
        URL, outcome) once, so a re-upload that names the same URL sends nothing.
        """
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
            allow_private=self.settings.webhook_allow_private,
            allowed_ports=self.settings.webhook_allowed_ports)
        self.slots = HostSlots(self.settings.webhook_max_per_host)
        self.publisher = QueuePublisher(config, self.container.serializer, self.settings.rpc_timeout)
        self.retry_queues = {delay: topology.delivery_retry_queue(delay, config)
                             for delay in set(self.settings.webhook_retry_delays) | {WAIT_SECONDS}}

    def get_dependency(self, worker_ctx):
        return self

    def handle(self, message, storage):
        """One delivery message: POST, or schedule the next attempt, wait, or give up.

        ``storage``: the storage RPC proxy (``get_image`` and the delivery
        ledger's ``claim_delivery`` / ``finish_delivery``).
        """
        image_id = message.get("id")
        attempts, pinned_url = retry_state(message)
        if message.get("deleted_at"):
            # image_deleted: the image is gone from storage; the event says all there is
            decision = deliver_deletion(message, self.sender.send, self.settings.webhook_retry_delays,
                                        self.slots)
            self._act(image_id, attempts, decision)
            return decision
        if message.get("has_callback") is False:
            return None  # imaging says the finished image has no callback_url
        delays = self.settings.webhook_retry_delays
        try:
            record = storage.get_image(image_id)
        except NotFound:
            log.warning("webhook for unknown image %r dropped", image_id)
            return None
        except Unavailable as exc:
            decision = next_attempt(image_id, attempts, pinned_url, exc.message, delays)
        else:
            status_body = api.image_status(record, self.settings.public_url)
            try:
                decision = deliver(message, record, status_body, self.sender.send, delays,
                                   StorageLedger(storage, self.lease_seconds), self.slots)
            except Unavailable as exc:
                # the ledger did not answer: look again later; if it was the attempt's
                # end that was lost, its POST is repeated once its lease has run out
                decision = Decision("deferred", exc.message, message, WAIT_SECONDS)
        self._act(image_id, attempts, decision)
        return decision

    @property
    def lease_seconds(self):
        # a claimed attempt outlives its POST (connect and read timeouts) and the storage calls
        return 2 * self.settings.webhook_timeout + 2 * self.settings.rpc_timeout

    def _act(self, image_id, attempts, decision):
        if decision.outcome == "delivered":
            log.info("webhook for image %s delivered (attempt %d): %s",
                     image_id, attempts + 1, decision.detail)
        elif decision.outcome == "retry":
            log.warning("webhook for image %s failed (attempt %d): %s; retrying in %g s",
                        image_id, attempts + 1, decision.detail, decision.retry_delay)
            self._publish(decision.retry_message, self.retry_queues[decision.retry_delay])
        elif decision.outcome == "deferred":
            log.debug("webhook for image %s waits %g s: %s", image_id, decision.retry_delay,
                      decision.detail)
            self._publish(decision.retry_message, self.retry_queues[decision.retry_delay])
        elif decision.outcome == "gave_up":
            log.error("webhook for image %s given up after %d attempts: %s",
                      image_id, attempts + 1, decision.detail)
        else:
            log.debug("webhook for image %s skipped: %s", image_id, decision.detail)

    def _publish(self, message, queue):
        self.publisher.publish(message, queue, "webhook retry")


class StorageLedger:
    """The delivery ledger (``imagepipe.storage.deliveries``) through the storage RPC proxy."""

    def __init__(self, storage, lease_seconds):
        self.storage = storage
        self.lease_seconds = lease_seconds

    def claim(self, image_id, url, outcome, attempt):
        return self.storage.claim_delivery(image_id, url, outcome, attempt, self.lease_seconds)

    def finish(self, image_id, url, outcome, attempt, state):
        self.storage.finish_delivery(image_id, url, outcome, attempt, state)
