"""StorageService delegating to a real ImageStore (no broker)."""
import pytest
from nameko.testing.services import worker_factory

from imagepipe.blobstore import FileBlobStore
from imagepipe.catalog import Catalog
from imagepipe.settings import Settings
from imagepipe.store import ImageStore
from services.storage import StorageService

INFO = {"format": "PNG", "mime_type": "image/png", "width": 1, "height": 1, "frames": 1}


@pytest.fixture
def service(tmp_path):
    store = ImageStore(FileBlobStore(tmp_path), Catalog.from_url("sqlite://"))
    return worker_factory(StorageService, store=store, config=Settings(stalled_after=0))


def test_rpc_methods_round_trip(service):
    record, created = service.put_original(b"png bytes", INFO)
    image_id = record["id"]
    assert created
    assert service.get_image(image_id)["status"] == "pending"
    assert service.start_processing(image_id)["status"] == "processing"
    meta = {"format": "webp", "mime_type": "image/webp", "width": 1, "height": 1}
    service.put_variant(image_id, "thumb", b"webp bytes", meta)
    assert service.get_variant(image_id, "thumb")[0] == b"webp bytes"
    assert service.finish(image_id, "done")["status"] == "done"
    assert [image["id"] for image in service.list_images()["images"]] == [image_id]


def test_sweeper_redispatches_stalled_images(service):
    image_id = service.put_original(b"stuck", INFO)[0]["id"]
    service.redispatch_stalled()
    service.dispatch.assert_called_once_with("image_uploaded", {"id": image_id})
