"""Storage: the only stateful service; owns originals, renditions, metadata.

Reached by AMQP RPC only.  All the work is in ``imagepipe.storage.store``.
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
    def get_variant(self, image_id, preset, fmt=None):
        return self.store.get_variant(image_id, preset, fmt)

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
