"""Deleting images, renditions that change, and presets that change -- in the storage model.

Real files, and the catalog of tests/unit/test_store.py's ``store``: every
test runs on SQLite and on PostgreSQL (marker ``postgres``).
"""
import os

import pytest
import sqlalchemy as sa

from imagepipe.errors import Conflict, ImageNotFound
from imagepipe.ids import content_sha256
from imagepipe.storage.blobs import original_key, variant_key
from imagepipe.storage.upkeep import reprocess_step
from tests.helpers import ORIGINAL_INFO as INFO
from tests.helpers import RENDITION_META as META
from tests.unit.test_store import catalog_url, store  # noqa: F401 (fixtures)

MIME = {"webp": "image/webp", "avif": "image/avif", "jpeg": "image/jpeg"}


def rendition(preset, data, fmt="webp"):
    return {"preset": preset, "data": data, "meta": dict(META, format=fmt, mime_type=MIME[fmt])}


def done_image(store, data, presets=("thumb", "medium")):
    """A done image with ``presets`` (names, in webp; or ``{name: [formats]}``)."""
    if not isinstance(presets, dict):
        presets = {name: ["webp"] for name in presets}
    image_id = store.put_original(data, INFO)[0]["id"]
    store.claim(image_id)
    store.complete(image_id, [rendition(name, data + name.encode() + fmt.encode(), fmt)
                              for name, formats in presets.items() for fmt in formats])
    return image_id


def blob_files(store):
    """Every blob file (the store's own ``.store-id`` marker left out)."""
    root = store.blobs.root
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names
                  if not (folder == root and name.startswith(".")))


def catalog_rows(store):
    with store.catalog.engine.connect() as conn:
        return {table: conn.execute(sa.text("SELECT COUNT(*) FROM " + table)).scalar()
                for table in ("images", "variants")}


# -- delete ------------------------------------------------------------------------

def test_delete_leaves_no_blob_and_no_row(store):
    image_id = done_image(store, b"photo", presets={"thumb": ["avif", "webp"], "medium": ["webp"]})
    keep = done_image(store, b"another")
    announced = []
    notice = store.delete_image(image_id, announce=announced.append)

    assert notice["id"] == image_id and notice["deleted_at"]
    assert announced == [notice]
    with pytest.raises(ImageNotFound):
        store.get_image(image_id)
    assert image_id not in "".join(blob_files(store))
    # nor a folder named after it; the shard folder stays only while it holds something
    folders = [folder for folder, _, _ in os.walk(store.blobs.root)]
    assert [folder for folder in folders if image_id in folder] == []
    assert catalog_rows(store) == {"images": 1, "variants": 2}  # only the other image's
    assert store.get_image(keep)["status"] == "done"
    # a second delete finds nothing: the same answer as for any unknown id
    with pytest.raises(ImageNotFound):
        store.delete_image(image_id)


def test_delete_also_removes_renditions_nobody_recorded(store):
    image_id = done_image(store, b"raced", presets=("thumb",))
    # a job wrote these and died before recording them (one under a pre-format key)
    store.blobs.put(variant_key(image_id, "medium", "avif"), b"orphan")
    store.blobs.put(variant_key(image_id, "thumb", "jpeg"), b"orphan too")
    store.delete_image(image_id, presets={"thumb": ["webp", "jpeg"], "medium": ["avif"]})
    assert blob_files(store) == []
    # no empty folders left either, but the top-level ones
    assert [folder for folder, _, _ in os.walk(store.blobs.root)
            if os.path.dirname(folder) != store.blobs.root and folder != store.blobs.root] == []
    store.put_original(b"raced", INFO)  # and writing there again makes them anew
    assert blob_files(store) == ["originals/{}/{}".format(image_id[:2], image_id)]


def test_an_interrupted_delete_stays_hidden_and_is_finished_later(store):
    image_id = done_image(store, b"interrupted")

    def broker_away(notice):
        raise RuntimeError("broker away")

    with pytest.raises(RuntimeError):
        store.delete_image(image_id, announce=broker_away)
    # hidden already, blobs gone, its row kept for the retry
    with pytest.raises(ImageNotFound):
        store.get_image(image_id)
    assert store.list_images()["images"] == []
    assert blob_files(store) == []
    assert catalog_rows(store)["images"] == 1
    assert store.unfinished_deletions(older_than=-1) == [image_id]
    first = store.catalog.mark_deleted(image_id)["deleted_at"]

    announced = []
    notice = store.delete_image(image_id, announce=announced.append)
    assert notice["deleted_at"] == first  # the same deletion, announced again
    assert announced == [notice]
    assert catalog_rows(store) == {"images": 0, "variants": 0}
    assert store.unfinished_deletions(older_than=-1) == []


def test_a_job_that_completes_after_the_delete_writes_nothing(store):
    image_id = store.put_original(b"late job", INFO)[0]["id"]
    store.claim(image_id)
    store.delete_image(image_id)
    with pytest.raises(ImageNotFound):
        store.complete(image_id, [rendition("thumb", b"t")])
    with pytest.raises(ImageNotFound):
        store.claim(image_id)
    assert blob_files(store) == [] and catalog_rows(store) == {"images": 0, "variants": 0}


def test_a_delete_while_a_job_writes_its_renditions_wins_and_the_job_cleans_up(store):
    image_id = store.put_original(b"racing", INFO)[0]["id"]
    store.claim(image_id)
    put = store.blobs.put

    def put_then_delete(key, *args, **kwargs):
        put(key, *args, **kwargs)
        if key == variant_key(image_id, "thumb", "webp"):
            store.delete_image(image_id)  # lands between the job's blob writes and its commit

    store.blobs.put = put_then_delete
    with pytest.raises(ImageNotFound):
        store.complete(image_id, [rendition("thumb", b"t"), rendition("medium", b"m")])
    store.blobs.put = put
    assert blob_files(store) == [] and catalog_rows(store) == {"images": 0, "variants": 0}


def granted(store, grant, data):
    """What imaging does on the claim-check path: write under the grant, describe it."""
    store.blobs.put(grant["key"], data)
    return {"preset": "thumb", "meta": META, "grant": grant["token"], "bytes": len(data),
            "sha256": content_sha256(data)}


def test_renditions_written_under_grants_for_a_deleted_image_go_too(store):
    image_id = store.put_original(b"claim-checked", INFO)[0]["id"]
    [grant] = store.claim(image_id, grants=1)["renditions"]
    staged = granted(store, grant, b"rendition")
    store.delete_image(image_id)  # before the job's complete
    with pytest.raises(ImageNotFound):
        store.complete(image_id, [staged])
    assert blob_files(store) == []  # not even in staging/


def test_a_delete_during_a_claim_checked_complete_leaves_nothing(store):
    image_id = store.put_original(b"claim-checked too", INFO)[0]["id"]
    [grant] = store.claim(image_id, grants=1)["renditions"]
    staged = granted(store, grant, b"rendition")
    promote = store.blobs.promote

    def promote_then_delete(*args, **kwargs):
        promote(*args, **kwargs)
        store.delete_image(image_id)  # lands between the promote and the commit

    store.blobs.promote = promote_then_delete
    with pytest.raises(ImageNotFound):
        store.complete(image_id, [staged])
    store.blobs.promote = promote
    assert blob_files(store) == [] and catalog_rows(store) == {"images": 0, "variants": 0}


def test_an_upload_racing_its_own_deletion_leaves_no_original(store):
    image_id = done_image(store, b"deleted meanwhile")
    store.catalog.mark_deleted(image_id)
    store.blobs.delete(original_key(image_id))  # the delete has removed the blobs already
    with pytest.raises(Conflict):
        store.put_original(b"deleted meanwhile", INFO)  # writes it again, then finds the mark
    assert not store.blobs.exists(original_key(image_id))


def test_a_reupload_after_delete_starts_afresh(store):
    image_id = done_image(store, b"again")
    store.delete_image(image_id)
    record, created = store.put_original(b"again", INFO)
    assert created and record["id"] == image_id
    assert (record["status"], record["attempts"], record["variants"]) == ("pending", 0, {})
    assert store.get_original(image_id) == b"again"


def test_a_reupload_while_the_delete_is_under_way_is_refused(store):
    image_id = done_image(store, b"busy")
    store.catalog.mark_deleted(image_id)  # blobs being removed right now
    with pytest.raises(Conflict):
        store.put_original(b"busy", INFO)


def test_deleted_images_leave_listings_at_once(store):
    first = done_image(store, b"one")
    second = done_image(store, b"two")
    store.catalog.mark_deleted(first)
    assert [record["id"] for record in store.list_images()["images"]] == [second]


# -- updated_at follows the renditions ---------------------------------------------

def test_updated_at_moves_when_renditions_are_written_and_only_then(store):
    now = [1000.0]
    store.catalog.clock = lambda: now[0]
    image_id = done_image(store, b"clocked", presets=("thumb",))
    done_at = store.get_image(image_id)["updated_at"]

    now[0] += 10
    # a redelivered job: everything is there, nothing is written
    unchanged = store.complete(image_id, [rendition("thumb", b"other bytes")])
    assert unchanged["updated_at"] == done_at
    # a reprocess of the done image rewrites it
    replaced = store.complete(image_id, [rendition("thumb", b"sharper")], replace=True)
    assert replaced["updated_at"] > done_at
    assert replaced["variants"]["thumb"]["sha256"] == content_sha256(b"sharper")
    now[0] += 10
    added = store.complete(image_id, [rendition("small", b"small")])
    assert added["updated_at"] > replaced["updated_at"]


# -- presets that change -----------------------------------------------------------

def test_rendition_gaps_name_what_each_done_image_lacks(store):
    full = done_image(store, b"full", presets=("thumb", "medium"))
    partial = done_image(store, b"partial", presets=("thumb",))
    store.put_original(b"pending", INFO)  # not done: its own job renders everything
    catalog = store.catalog
    configured = {"thumb": ["webp"], "medium": ["webp"]}
    assert catalog.rendition_gaps(configured) == [(partial, ["medium"])]
    assert catalog.count_rendition_gaps(configured) == 1
    # a preset added, and a format added to one
    more = {"thumb": ["avif", "webp"], "medium": ["webp"], "small": ["webp"]}
    assert catalog.rendition_gaps(more) == sorted(
        [(full, ["small", "thumb"]), (partial, ["medium", "small", "thumb"])])
    assert catalog.count_rendition_gaps(more) == 2
    every = catalog.rendition_gaps({"thumb": ["webp"]}, every=True)
    assert every == sorted([(full, ["thumb"]), (partial, ["thumb"])])
    assert catalog.count_rendition_gaps({"thumb": ["webp"]}, every=True) == 2
    # pages in id order after the cursor
    first_id = min(full, partial)
    assert [image_id for image_id, _ in catalog.rendition_gaps(
        {"thumb": ["webp"]}, first_id, every=True)] == [max(full, partial)]


class Queue:
    """A job queue that holds what it is given (nobody consumes it)."""

    def __init__(self, waiting=0):
        self.jobs = []
        self.already = waiting

    def waiting(self):
        return self.already + len(self.jobs)

    def redispatch(self, job):
        self.jobs.append(job)


SMALL_ADDED = {"thumb": ["webp"], "small": ["webp"]}


def test_reprocess_steps_never_fill_the_queue_beyond_max_waiting(store):
    image_ids = sorted(done_image(store, "image {}".format(n).encode(), ("thumb",)) for n in range(5))
    queue = Queue(waiting=1)  # an upload is waiting already
    step = reprocess_step(store.catalog, SMALL_ADDED, queue, max_waiting=3)
    assert (step["enqueued"], step["finished"], queue.waiting()) == (2, False, 3)
    assert queue.jobs == [{"id": image_id, "reprocess": True, "presets": ["small"]}
                          for image_id in image_ids[:2]]
    full = reprocess_step(store.catalog, SMALL_ADDED, queue, step["cursor"], max_waiting=3)
    assert (full["enqueued"], full["finished"], full["cursor"]) == (0, False, step["cursor"])

    # imaging takes one job between steps: the run goes on, never above 3 waiting
    enqueued = [job["id"] for job in queue.jobs]
    cursor, steps = step["cursor"], 0
    while not step["finished"]:
        queue.jobs.pop(0)
        before = len(queue.jobs)
        step = reprocess_step(store.catalog, SMALL_ADDED, queue, cursor, max_waiting=3)
        assert queue.waiting() <= 3
        enqueued += [job["id"] for job in queue.jobs[before:]]
        cursor, steps = step["cursor"], steps + 1
    assert enqueued == image_ids  # each image once, in id order
    assert steps == 4  # one job of room per step, and a last step that finds nothing more


def test_reprocess_of_every_preset_names_none(store):
    image_id = done_image(store, b"every", ("thumb",))
    queue = Queue()
    step = reprocess_step(store.catalog, {"thumb": ["webp"]}, queue, every=True)
    assert step["finished"] and queue.jobs == [{"id": image_id, "reprocess": True}]


def test_stale_renditions_are_listed_and_pruned(store):
    now = [1000.0]
    store.catalog.clock = lambda: now[0]
    image_id = done_image(store, b"stale", presets={"thumb": ["avif", "webp"], "old": ["webp"],
                                                    "older": ["webp"]})
    other = done_image(store, b"stale too", presets=("thumb", "old"))
    configured = {"thumb": ["webp"]}  # "old" and "older" removed, and thumb's avif
    stale = store.catalog.stale_renditions(configured)
    assert set(stale) == {"old.webp", "older.webp", "thumb.avif"}
    assert stale["old.webp"]["renditions"] == 2
    assert stale["old.webp"]["bytes"] == len(b"staleoldwebp") + len(b"stale toooldwebp")

    now[0] += 5
    assert store.prune_renditions(configured, limit=2) == 2
    assert store.prune_renditions(configured, limit=100) == 2
    assert store.prune_renditions(configured) == 0
    assert store.catalog.stale_renditions(configured) == {}
    for kept in (image_id, other):
        record = store.get_image(kept)
        assert list(record["variants"]) == ["thumb"]
        assert list(record["variants"]["thumb"]["formats"]) == ["webp"]
        assert record["updated_at"].startswith("1970-01-01T00:16:45")  # moved to 1005
    assert sorted(name for name in blob_files(store) if name.startswith("variants")) == sorted(
        "variants/{}/{}/thumb.webp".format(kept[:2], kept) for kept in (image_id, other))
