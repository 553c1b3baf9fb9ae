"""StorageService delegating to a real ImageStore (no broker)."""
import pytest
from nameko.testing.services import worker_factory

from imagepipe.storage.blobs.files import FileBlobStore
from imagepipe.storage.catalog import Catalog
from imagepipe.errors import BadRequest, ImageNotFound, Unavailable
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
    # the job hears only what it acts on; the record stays in the catalog
    assert service.complete(image_id, renditions) == {
        "id": image_id, "status": "done", "error": None, "callback_url": None}
    record = service.get_image(image_id)
    assert {name: variant["bytes"] for name, variant in record["variants"].items()} == {
        "thumb": len(b"thumb bytes"), "medium": len(b"medium bytes")}
    assert service.get_variant(image_id, "medium")[0] == b"medium bytes"
    # a redelivered job: the finished image is not handed out again, and a
    # second complete changes nothing
    again = service.claim(image_id)
    assert again["record"]["status"] == "done" and again["original"] is None
    renditions[0]["data"] = b"other bytes"
    service.complete(image_id, renditions)
    assert service.get_image(image_id)["variants"]["thumb"]["bytes"] == len(b"thumb bytes")
    # an operator's reprocess gets the original and replaces renditions
    assert service.claim(image_id, retry_failed=True)["original"] == b"png bytes"
    service.complete(image_id, renditions, replace=True)
    assert service.get_image(image_id)["variants"]["thumb"]["bytes"] == len(b"other bytes")


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


def test_delete_announces_image_deleted_before_the_rows_go(service):
    image_id = service.put_original(b"erase me", INFO, "https://h.example/hook")[0]["id"]
    seen = []
    service.events.side_effect = lambda event, notice: seen.append(
        (event, notice, service.store.catalog.unfinished_deletions(-1)))
    notice = service.delete_image(image_id)
    assert seen == [("image_deleted", notice, [image_id])]  # rows still there, marked
    assert notice == {"id": image_id, "deleted_at": notice["deleted_at"],
                      "callback_url": "https://h.example/hook"}
    assert service.store.catalog.unfinished_deletions(-1) == []


def test_the_sweeper_finishes_a_delete_the_broker_interrupted(service):
    image_id = service.put_original(b"half erased", INFO)[0]["id"]
    service.events.side_effect = Unavailable("the message broker did not confirm the event")
    with pytest.raises(Unavailable):
        service.delete_image(image_id)
    with pytest.raises(ImageNotFound):
        service.get_image(image_id)  # hidden meanwhile
    service.events.side_effect = None
    service.finish_deletions()
    service.events.assert_called_with("image_deleted", {
        "id": image_id, "deleted_at": service.events.call_args.args[1]["deleted_at"],
        "callback_url": None})
    assert service.store.catalog.unfinished_deletions(-1) == []
    service.finish_deletions()  # nothing left to do
    assert service.events.call_count == 2
