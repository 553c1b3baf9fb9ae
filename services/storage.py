"""Storage: the only stateful service; owns originals, renditions, metadata.

Reached by AMQP RPC only.  All the work is in ``imagepipe.store``.
"""
from nameko.rpc import rpc

from services.dependencies import Storage


class StorageService:
    name = "storage"

    store = Storage()

    @rpc
    def put_original(self, data, info):
        return self.store.put_original(data, info)

    @rpc
    def get_image(self, image_id):
        return self.store.get_image(image_id)

    @rpc
    def list_images(self, limit=20, before=None):
        return self.store.list_images(limit, before)

    @rpc
    def get_original(self, image_id):
        return self.store.get_original(image_id)

    @rpc
    def get_variant(self, image_id, preset):
        return self.store.get_variant(image_id, preset)

    @rpc
    def start_processing(self, image_id):
        return self.store.start_processing(image_id)

    @rpc
    def put_variant(self, image_id, preset, data, meta, replace=False):
        return self.store.put_variant(image_id, preset, data, meta, replace)

    @rpc
    def finish(self, image_id, status, error=None):
        return self.store.finish(image_id, status, error)

    @rpc
    def ping(self):
        return "pong"
