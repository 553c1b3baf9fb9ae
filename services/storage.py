"""Storage: the only stateful service; owns originals, renditions, metadata.

Reached by AMQP RPC only.  All the work is in ``imagepipe.storage.store``.
"""
import logging

from imagepipe.errors import ImageNotFound
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

    @rpc
    def put_original(self, data, info, callback_url=None):
        return self.store.put_original(data, info, callback_url)

    @rpc
    def get_image(self, image_id):
        return self.store.get_image(image_id)

    @rpc
    def list_images(self, limit=20, cursor=None):
        return self.store.list_images(limit, cursor)

    @rpc
    def get_original(self, image_id):
        return self.store.get_original(image_id)

    @rpc
    def get_variant(self, image_id, preset):
        return self.store.get_variant(image_id, preset)

    # An imaging job's two round trips, and its way out when it gives up.
    @rpc
    def claim(self, image_id, retry_failed=False):
        return self.store.claim(image_id, retry_failed)

    @rpc
    def complete(self, image_id, renditions, replace=False):
        return self.store.complete(image_id, renditions, replace)

    @rpc
    def finish(self, image_id, status, error=None):
        return self.store.finish(image_id, status, error)

    # Erasure: the original, every rendition, the rows; then image_deleted.
    @rpc
    def delete_image(self, image_id):
        return self.store.delete_image(image_id, self._preset_names(), self._announce_deletion)

    # Presets changed: render what is missing (or everything), prune what is gone.
    @rpc
    def reprocess_plan(self, every=False):
        """``{"images": how many a reprocess run would enqueue, "presets": [...]}``."""
        names = self._preset_names()
        return {"images": self.store.catalog.count_rendition_gaps(names, every), "presets": names}

    @rpc
    def reprocess_batch(self, cursor=None, every=False, max_waiting=upkeep.DEFAULT_MAX_WAITING,
                        limit=upkeep.DEFAULT_BATCH):
        return upkeep.reprocess_step(self.store.catalog, self._preset_names(), self.jobs, cursor,
                                     every, max_waiting, limit)

    @rpc
    def stale_renditions(self):
        """Renditions of presets no longer configured: ``{preset: {"renditions", "bytes"}}``."""
        return self.store.catalog.stale_renditions(self._preset_names())

    @rpc
    def prune_renditions(self, limit=upkeep.DEFAULT_BATCH):
        """Delete up to ``limit`` of them; ``{"pruned": n, "remaining": n}``."""
        pruned = self.store.prune_renditions(self._preset_names(), limit)
        remaining = sum(stale["renditions"] for stale in self.stale_renditions().values())
        return {"pruned": pruned, "remaining": remaining}

    @rpc
    def ping(self):
        return "pong"

    @configured_timer("SWEEP_INTERVAL", 60)
    def redispatch_stalled(self):
        """Heal lost jobs: re-dispatch images unfinished for STALLED_AFTER seconds.

        Duplicates are harmless (processing is idempotent); touching each image
        spaces out the re-dispatches of one that keeps stalling.
        """
        for image_id in self.store.stalled_image_ids(self.config.stalled_after):
            log.warning("image %s stalled; dispatching its job again", image_id)
            self.jobs.redispatch({"id": image_id})
            self.store.touch(image_id)

    @configured_timer("SWEEP_INTERVAL", 60)
    def finish_deletions(self):
        """Finish deletions interrupted (a crash, the broker away) for STALLED_AFTER seconds."""
        for image_id in self.store.unfinished_deletions(self.config.stalled_after):
            log.warning("deletion of image %s was interrupted; finishing it", image_id)
            try:
                self.delete_image(image_id)
            except ImageNotFound:
                continue  # another storage process finished it meanwhile

    def _preset_names(self):
        return [preset.name for preset in self.config.presets]

    def _announce_deletion(self, notice):
        self.events(topology.DELETED_EVENT, notice)
