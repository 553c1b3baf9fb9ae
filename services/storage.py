"""Storage: the only stateful service; owns originals, renditions, metadata.

Reached by AMQP RPC only.  All the work is in ``imagepipe.storage.store``.
Bytes come and go two ways: under grants this service issues (the gateway
and imaging write and read the blob store themselves, and ``register_*`` /
``complete`` check what they wrote), or in the calls themselves where a
caller cannot reach the blob store.  ``tenant`` scopes a call to one API
key's images (None: all).
"""
import logging

from imagepipe.errors import ImageNotFound
from imagepipe.records import job_outcome
from imagepipe.storage import upkeep
from services import topology
from services.extensions.events import ConfirmedDispatcher
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
    events = ConfirmedDispatcher()
    metrics = Metrics()
    log_context = LogContext()

    # -- an upload ----------------------------------------------------------------
    @rpc
    def grant_original_upload(self):
        return self.store.grant_original_upload()

    @rpc
    def grant_original_uploads(self, count):
        return self.store.grant_original_uploads(count)

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

    # A job's last call is answered with the little it acts on, not the whole
    # record: that reply crosses the broker once per image.
    @rpc
    def complete(self, image_id, renditions, replace=False):
        return job_outcome(self.store.complete(image_id, renditions, replace))

    @rpc
    def finish(self, image_id, status, error=None):
        return job_outcome(self.store.finish(image_id, status, error))

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

    # Erasure: the original, every rendition, the rows; then image_deleted.
    @rpc
    def delete_image(self, image_id, tenant=None):
        return self.store.delete_image(image_id, self._configured(), self._announce_deletion,
                                       tenant)

    # Presets changed: render what is missing (or everything), prune what is gone.
    @rpc
    def reprocess_plan(self, every=False):
        """``{"images": how many a reprocess run would enqueue, "presets": [...]}``."""
        configured = self._configured()
        return {"images": self.store.catalog.count_rendition_gaps(configured, every),
                "presets": list(configured)}

    @rpc
    def reprocess_batch(self, cursor=None, every=False, max_waiting=upkeep.DEFAULT_MAX_WAITING,
                        limit=upkeep.DEFAULT_BATCH):
        return upkeep.reprocess_step(self.store.catalog, self._configured(), self.jobs, cursor,
                                     every, max_waiting, limit)

    @rpc
    def stale_renditions(self):
        """Renditions no preset asks for any more (a preset or one of its formats removed):
        ``{"<preset>.<format>": {"renditions", "bytes"}}``."""
        return self.store.catalog.stale_renditions(self._configured())

    @rpc
    def prune_renditions(self, limit=upkeep.DEFAULT_BATCH):
        """Delete up to ``limit`` of them; ``{"pruned": n, "remaining": n}``."""
        pruned = self.store.prune_renditions(self._configured(), limit)
        remaining = sum(stale["renditions"] for stale in self.stale_renditions().values())
        return {"pruned": pruned, "remaining": remaining}

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

    @configured_timer("SWEEP_INTERVAL", 60)
    def finish_deletions(self):
        """Finish deletions interrupted (a crash, the broker away) for STALLED_AFTER seconds."""
        for image_id in self.store.unfinished_deletions(self.config.stalled_after):
            log.warning("deletion of image %s was interrupted; finishing it", image_id)
            try:
                self.delete_image(image_id)
            except ImageNotFound:
                continue  # another storage process finished it meanwhile

    def _configured(self):
        """``{preset: [formats]}`` of config.yaml's presets, in their order."""
        return {preset.name: list(preset.formats) for preset in self.config.presets}

    def _announce_deletion(self, notice):
        self.events(topology.DELETED_EVENT, notice)
