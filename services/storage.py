"""Storage: the only stateful service; owns originals, renditions, metadata.

Reached by AMQP RPC only.  All the work is in ``imagepipe.storage.store``.
Bytes come and go two ways: under grants this service issues (the gateway
and imaging write and read the blob store themselves, and ``register_*`` /
``complete`` check what they wrote), or in the calls themselves where a
caller cannot reach the blob store.  ``tenant`` scopes a call to one API
key's images (None: all).
"""
import logging

from services.extensions.observability import LogContext, Metrics
from services.extensions.providers import Config, ImageStoreProvider
from services.extensions.retries import JobQueue
from services.extensions.rpc import rpc
from services.extensions.timer import configured_timer

log = logging.getLogger(__name__)


class StorageService:
    name = "storage"

    config = Config()
    store = ImageStoreProvider()
    jobs = JobQueue()
    metrics = Metrics()
    log_context = LogContext()

    # -- an upload ----------------------------------------------------------------
    @rpc
    def grant_original_upload(self):
        return self.store.grant_original_upload()

    @rpc
    def register_original(self, grant, size, sha256, info, callback_url=None, tenant=None):
        return self.store.register_original(grant, size, sha256, info, callback_url, tenant)

    @rpc
    def put_original(self, data, info, callback_url=None, tenant=None):
        return self.store.put_original(data, info, callback_url, tenant)

    # -- reads ----------------------------------------------------------------------
    @rpc
    def get_image(self, image_id, tenant=None):
        return self.store.get_image(image_id, tenant)

    @rpc
    def list_images(self, limit=20, cursor=None, tenant=None):
        return self.store.list_images(limit, cursor, tenant)

    @rpc
    def grant_read(self, image_id, name, tenant=None, fmt=None):
        return self.store.grant_read(image_id, name, tenant, fmt)

    @rpc
    def get_original(self, image_id, tenant=None):
        return self.store.get_original(image_id, tenant)

    @rpc
    def get_variant(self, image_id, preset, fmt=None, tenant=None):
        return self.store.get_variant(image_id, preset, fmt, tenant)

    # -- an imaging job's two round trips, and its way out when it gives up --------
    @rpc
    def claim(self, image_id, retry_failed=False, grants=None):
        return self.store.claim(image_id, retry_failed, grants)

    @rpc
    def complete(self, image_id, renditions, replace=False):
        return self.store.complete(image_id, renditions, replace)

    @rpc
    def finish(self, image_id, status, error=None):
        return self.store.finish(image_id, status, error)

    # Webhook deliveries: each (image, URL, outcome) once, whoever asks again.
    @rpc
    def claim_delivery(self, image_id, url, outcome, attempt, lease_seconds):
        return self.store.claim_delivery(image_id, url, outcome, attempt, lease_seconds)

    @rpc
    def finish_delivery(self, image_id, url, outcome, attempt, state):
        return self.store.finish_delivery(image_id, url, outcome, attempt, state)

    # -- operations -----------------------------------------------------------------
    @rpc
    def blob_access(self):
        return self.store.access()

    @rpc
    def ping(self):
        return "pong"

    @configured_timer("SWEEP_INTERVAL", 60)
    def sweep(self):
        """Heal lost jobs and drop abandoned staged blobs.

        Images unfinished for STALLED_AFTER seconds are dispatched again
        (duplicates are harmless: processing is idempotent; touching each
        image spaces out the re-dispatches of one that keeps stalling).
        Blobs staged under grants and never registered -- a gateway or
        imaging process that died mid-write -- go after STAGING_MAX_AGE.
        """
        for image_id in self.store.stalled_image_ids(self.config.stalled_after):
            log.warning("image %s stalled; dispatching its job again", image_id)
            self.jobs.redispatch({"id": image_id})
            self.store.touch(image_id)
        dropped = self.store.sweep_staging()
        if dropped:
            log.warning("dropped %d staged blobs never registered", dropped)
