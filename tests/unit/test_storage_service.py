"""StorageService delegating to a real ImageStore (no broker)."""
import pytest
from nameko.testing.services import worker_factory

from imagepipe.storage.blobs.files import FileBlobStore
from imagepipe.storage.catalog import Catalog
from imagepipe.errors import BadRequest
from imagepipe.settings import Settings
from imagepipe.storage.store import ImageStore
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
    assert service.get_original(image_id) == b"png bytes"
    assert service.claim(image_id)["record"]["status"] == "processing"
    assert service.finish(image_id, "failed", "broken")["status"] == "failed"
    assert [image["id"] for image in service.list_images()["images"]] == [image_id]


def test_claim_and_complete_are_a_job_in_two_round_trips(service):
    image_id = service.put_original(b"png bytes", INFO)[0]["id"]
    claimed = service.claim(image_id)
    assert claimed["record"]["status"] == "processing" and claimed["record"]["attempts"] == 1
    assert claimed["original"] == b"png bytes"
    meta = {"format": "webp", "mime_type": "image/webp", "width": 1, "height": 1}
    renditions = [{"preset": "thumb", "data": b"thumb bytes", "meta": meta},
                  {"preset": "medium", "data": b"medium bytes", "meta": meta}]
    record = service.complete(image_id, renditions)
    assert record["status"] == "done"
    assert {name: variant["bytes"] for name, variant in record["variants"].items()} == {
        "thumb": len(b"thumb bytes"), "medium": len(b"medium bytes")}
    assert service.get_variant(image_id, "medium")[0] == b"medium bytes"
    # a redelivered job: the finished image is not handed out again, and a
    # second complete changes nothing
    again = service.claim(image_id)
    assert again["record"]["status"] == "done" and again["original"] is None
    renditions[0]["data"] = b"other bytes"
    assert service.complete(image_id, renditions)["variants"]["thumb"]["bytes"] == len(b"thumb bytes")
    # an operator's reprocess gets the original and replaces renditions
    assert service.claim(image_id, retry_failed=True)["original"] == b"png bytes"
    assert service.complete(image_id, renditions, replace=True)["variants"]["thumb"]["bytes"] == \
        len(b"other bytes")


def test_complete_refuses_an_empty_rendition(service):
    image_id = service.put_original(b"png bytes", INFO)[0]["id"]
    service.claim(image_id)
    meta = {"format": "webp", "mime_type": "image/webp", "width": 1, "height": 1}
    with pytest.raises(BadRequest):
        service.complete(image_id, [{"preset": "thumb", "data": b"", "meta": meta}])
    assert service.get_image(image_id)["status"] == "processing"


def test_sweeper_redispatches_stalled_images(service):
    image_id = service.put_original(b"stuck", INFO)[0]["id"]
    service.sweep()
    service.jobs.redispatch.assert_called_once_with({"id": image_id})
