"""ImageStore, Catalog and FileBlobStore on real files and a real catalog.

The catalog tests run twice: on a SQLite file and on a scratch PostgreSQL
database (marker ``postgres``; TEST_POSTGRES_URL) -- the same Alembic
migrations and SQL serve both.
"""
import os

import pytest

from imagepipe.storage.blobs import original_key, variant_key
from imagepipe.storage.blobs.files import FileBlobStore
from imagepipe.storage.catalog import Catalog
from imagepipe.errors import BadRequest, NotFound
from imagepipe.ids import content_sha256, image_id_for
from imagepipe.storage.store import ImageStore
from tests.helpers import ORIGINAL_INFO as INFO
from tests.helpers import RENDITION_META as META
from tests.helpers import ScratchDatabase


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request, tmp_path):
    """An empty catalog database: a SQLite file, or a PostgreSQL database made for the test."""
    if request.param == "sqlite":
        yield "sqlite:///{}".format(tmp_path / "catalog.sqlite3")
        return
    with ScratchDatabase() as database:
        yield database.url


@pytest.fixture
def store(tmp_path, catalog_url):
    catalog = Catalog.from_url(catalog_url)
    yield ImageStore(FileBlobStore(tmp_path / "blobs"), catalog)
    catalog.engine.dispose()


def test_id_derives_from_content_and_duplicates_are_stored_once(store, tmp_path):
    record, created = store.put_original(b"some image bytes", INFO)
    again, created_again = store.put_original(b"some image bytes", INFO)
    assert created and not created_again
    assert record["id"] == again["id"] == image_id_for(content_sha256(b"some image bytes"))
    assert record["status"] == "pending"
    assert record["original"]["bytes"] == 16
    assert store.get_original(record["id"]) == b"some image bytes"
    files = [name for _, _, names in os.walk(tmp_path / "blobs" / "originals") for name in names]
    assert files == [record["id"]]


def test_empty_original_is_rejected(store):
    with pytest.raises(BadRequest):
        store.put_original(b"", INFO)


def test_status_only_moves_forward(store):
    image_id = store.put_original(b"x", INFO)[0]["id"]
    assert store.claim(image_id)["record"]["status"] == "processing"
    assert store.claim(image_id)["record"]["attempts"] == 2  # a redelivery counts
    assert store.finish(image_id, "done")["status"] == "done"
    # a late duplicate cannot move it back or flip it to failed
    assert store.claim(image_id)["record"]["status"] == "done"
    assert store.finish(image_id, "failed", "late")["status"] == "done"
    assert store.get_image(image_id)["error"] is None
    assert store.get_image(image_id)["attempts"] == 2


def test_reupload_of_a_failed_image_starts_it_afresh(store):
    image_id = store.put_original(b"y", INFO)[0]["id"]
    store.claim(image_id)
    assert store.finish(image_id, "failed", "broken")["error"] == "broken"
    record, created = store.put_original(b"y", INFO)
    assert not created
    assert (record["status"], record["error"], record["attempts"]) == ("pending", None, 0)


def rendition(preset, data):
    return {"preset": preset, "data": data, "meta": META}


def test_complete_keeps_recorded_renditions_unless_replacing(store):
    image_id = store.put_original(b"z", INFO)[0]["id"]
    first = store.complete(image_id, [rendition("thumb", b"rendition-1")])["variants"]["thumb"]
    second = store.complete(image_id, [rendition("thumb", b"rendition-2")])["variants"]["thumb"]
    assert first == second
    assert first["writes"] == 1
    assert store.get_variant(image_id, "thumb")[0] == b"rendition-1"
    replaced = store.complete(image_id, [rendition("thumb", b"rendition-3")], replace=True)["variants"]["thumb"]
    assert replaced["writes"] == 2
    data, variant = store.get_variant(image_id, "thumb")
    assert data == b"rendition-3"
    assert variant["sha256"] == content_sha256(b"rendition-3")
    assert variant["bytes"] == len(b"rendition-3")


@pytest.mark.parametrize("image_id", ["../../etc/passwd", "ABC", "", None, "0" * 31, "g" * 32])
def test_invalid_ids_are_not_found(store, image_id):
    with pytest.raises(NotFound):
        store.get_image(image_id)
    with pytest.raises(NotFound):
        store.get_original(image_id)


@pytest.mark.parametrize("preset", ["../x", "original", "events", "A", "", "a/b", "x" * 40])
def test_invalid_preset_names_never_reach_the_filesystem(store, preset):
    image_id = store.put_original(b"w", INFO)[0]["id"]
    with pytest.raises(NotFound):
        store.complete(image_id, [rendition(preset, b"data")])
    with pytest.raises(NotFound):
        variant_key(image_id, preset)


def test_unknown_image_is_not_found(store):
    with pytest.raises(NotFound):
        store.get_image("0" * 32)
    with pytest.raises(NotFound):
        store.get_original("0" * 32)


def test_blob_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    blobs = FileBlobStore(tmp_path)
    key = original_key("a" * 32)
    blobs.put(key, b"one")
    blobs.put(key, b"two")
    assert blobs.get(key) == b"two"
    leftovers = [name for _, _, names in os.walk(tmp_path) for name in names if name.startswith(".tmp")]
    assert leftovers == []


def test_blob_keys_cannot_escape_the_root(tmp_path):
    blobs = FileBlobStore(tmp_path / "root")
    with pytest.raises(NotFound):
        blobs.put("../outside", b"x")
    assert not (tmp_path / "outside").exists()


def test_stalled_images_are_found_by_age(tmp_path):
    now = [1000.0]
    catalog = Catalog.from_url("sqlite:///{}".format(tmp_path / "c.sqlite3"))
    catalog.clock = lambda: now[0]
    catalog.add_image("a" * 32, "a" * 64, INFO, 1)
    catalog.add_image("b" * 32, "b" * 64, INFO, 1)
    catalog.finish("b" * 32, "done")
    now[0] += 301
    assert catalog.stalled_image_ids(older_than=300) == ["a" * 32]
    assert catalog.stalled_image_ids(older_than=400) == []


def test_list_images_newest_first_in_stable_pages(store):
    now = [1000.0]
    store.catalog.clock = lambda: now[0]
    for index, letter in enumerate("abcde"):
        now[0] = 1000.0 + index // 2  # pairs share a timestamp
        store.put_original(letter.encode() * 3, INFO)
    seen, cursor = [], None
    while True:
        page = store.list_images(limit=2, cursor=cursor)
        seen += [record["id"] for record in page["images"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    stamps = [store.get_image(image_id)["created_at"] for image_id in seen]
    assert stamps == sorted(stamps, reverse=True)


def test_list_images_rejects_a_forged_cursor(store):
    with pytest.raises(BadRequest):
        store.list_images(cursor="not-a-cursor")


def test_operator_retry_restarts_a_failed_image_only_when_asked(store):
    image_id = store.put_original(b"v", INFO)[0]["id"]
    store.claim(image_id)
    store.finish(image_id, "failed", "storage gave up")
    assert store.claim(image_id)["record"]["status"] == "failed"
    record = store.claim(image_id, retry_failed=True)["record"]
    assert (record["status"], record["error"], record["attempts"]) == ("processing", None, 1)


def test_callback_url_is_kept_and_the_latest_one_wins(store):
    record, _ = store.put_original(b"hooked", INFO, "https://a.example/hook")
    assert record["callback_url"] == "https://a.example/hook"
    # a re-upload without a callback_url keeps the one there is
    assert store.put_original(b"hooked", INFO)[0]["callback_url"] == "https://a.example/hook"
    store.claim(record["id"])
    store.finish(record["id"], "done")
    # a re-upload naming another one replaces it, and leaves the status alone
    again, created = store.put_original(b"hooked", INFO, "https://b.example/hook")
    assert not created
    assert (again["callback_url"], again["status"]) == ("https://b.example/hook", "done")
    assert store.put_original(b"plain", INFO)[0]["callback_url"] is None


def old_image_row(image_id):
    return ("INSERT INTO images (id, sha256, format, mime_type, width, height, frames, bytes,"
            " status, error, attempts, created_at, updated_at) VALUES ('" + image_id + "', '"
            + image_id * 2 + "', 'JPEG', 'image/jpeg', 3, 2, 1, 9, 'done', NULL, 1, 1.0, 2.0)")


def migrate_to(catalog_url, revision, *statements):
    """A catalog at an old schema ``revision``, with rows written by ``statements``."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from imagepipe.storage.catalog import MIGRATIONS, make_engine

    engine = make_engine(catalog_url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def test_upgrade_from_0001_keeps_images_and_adds_callback_url(catalog_url):
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

    from imagepipe.storage.catalog import MIGRATIONS

    migrate_to(catalog_url, "0001", old_image_row("e" * 32))
    catalog = Catalog.from_url(catalog_url)  # what a storage process does at start-up
    record = catalog.get_image("e" * 32)
    assert (record["status"], record["original"]["width"], record["callback_url"]) == ("done", 3, None)
    with catalog.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == \
            ScriptDirectory(str(MIGRATIONS)).get_current_head()
    catalog.engine.dispose()


# -- the webhook delivery ledger (imagepipe.storage.deliveries) -----------------------

HOOK = "https://hooks.example/x"


def test_a_delivery_is_claimed_once_and_finished_once(store):
    image_id = store.put_original(b"ledger bytes", INFO)[0]["id"]
    assert store.claim_delivery(image_id, HOOK, "done", 0, 30) == "claimed"
    assert store.claim_delivery(image_id, HOOK, "done", 0, 30) == "busy"  # attempt 1 is under way
    store.finish_delivery(image_id, HOOK, "done", 1, "pending")  # it failed; a retry follows
    assert store.claim_delivery(image_id, HOOK, "done", 0, 30) == "superseded"  # a late duplicate
    assert store.claim_delivery(image_id, HOOK, "done", 1, 30) == "claimed"  # the retry
    store.finish_delivery(image_id, HOOK, "done", 2, "delivered")
    store.finish_delivery(image_id, HOOK, "done", 2, "gave_up")  # a stale finisher changes nothing
    assert store.deliveries.state(image_id, HOOK, "done") == ("delivered", 2)
    for attempt in (0, 1, 2):
        assert store.claim_delivery(image_id, HOOK, "done", attempt, 30) == "finished"
    # another outcome, or another URL, is another delivery
    assert store.claim_delivery(image_id, HOOK, "failed", 0, 30) == "claimed"
    assert store.claim_delivery(image_id, HOOK + "?other", "done", 0, 30) == "claimed"


def test_concurrent_claims_of_one_delivery_have_one_winner(store):
    import threading

    image_id = store.put_original(b"raced ledger bytes", INFO)[0]["id"]
    results, start = [], threading.Barrier(6)

    def claim():
        start.wait()
        results.append(store.claim_delivery(image_id, HOOK, "done", 0, 30))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["busy"] * 5 + ["claimed"]


def test_a_preset_has_one_rendition_per_format_under_its_own_key(store, tmp_path):
    image_id = store.put_original(b"formats", INFO)[0]["id"]
    store.claim(image_id)
    record = store.complete(image_id, [
        {"preset": "thumb", "data": b"avif-bytes", "meta": dict(
            META, format="avif", mime_type="image/avif", rank=0, placeholder="3OgFDw", color="#51593a",
            focus=[0.25, 0.5], frames=1)},
        {"preset": "thumb", "data": b"webp-bytes", "meta": dict(META, rank=1, frames=3)},
    ])
    thumb = record["variants"]["thumb"]
    assert (thumb["format"], thumb["placeholder"], thumb["color"], thumb["focus"]) == (
        "avif", "3OgFDw", "#51593a", [0.25, 0.5])  # the preferred format describes the preset
    assert list(thumb["formats"]) == ["avif", "webp"] and thumb["formats"]["webp"]["frames"] == 3
    assert store.get_variant(image_id, "thumb")[0] == b"avif-bytes"
    assert store.get_variant(image_id, "thumb", "webp")[0] == b"webp-bytes"
    with pytest.raises(NotFound):
        store.get_variant(image_id, "thumb", "png")
    assert store.blobs.get(variant_key(image_id, "thumb", "webp")) == b"webp-bytes"
    # a redelivered job adds a missing format and leaves stored ones alone
    again = store.complete(image_id, [
        {"preset": "thumb", "data": b"other", "meta": dict(META, rank=1)},
        {"preset": "thumb", "data": b"jpeg-bytes", "meta": dict(
            META, format="jpeg", mime_type="image/jpeg", rank=2)}])
    assert [meta["writes"] for meta in again["variants"]["thumb"]["formats"].values()] == [1, 1, 1]
    assert store.get_variant(image_id, "thumb", "webp")[0] == b"webp-bytes"


def test_upload_focus_is_kept_and_the_latest_wins(store):
    record, _ = store.put_original(b"focused", dict(INFO, focus=(0.1, 0.9)))
    assert record["focus"] == [0.1, 0.9]
    assert store.put_original(b"focused", INFO)[0]["focus"] == [0.1, 0.9]  # none named: kept
    assert store.put_original(b"focused", dict(INFO, focus=[0.5, 0.25]))[0]["focus"] == [0.5, 0.25]
    assert store.put_original(b"plain focus", INFO)[0]["focus"] is None


def test_upgrade_from_0002_keeps_single_format_renditions_readable(catalog_url, tmp_path):
    image_id = "f" * 32
    migrate_to(catalog_url, "0002", old_image_row(image_id), (
        "INSERT INTO variants (image_id, preset, format, mime_type, width, height, bytes,"
        " sha256, writes, created_at) VALUES ('" + image_id + "', 'thumb', 'webp', 'image/webp',"
        " 3, 2, 10, '" + "a" * 64 + "', 1, 2.0)"))
    blobs = FileBlobStore(tmp_path / "old-blobs")
    blobs.put(variant_key(image_id, "thumb"), b"old single", "image/webp")  # the key before 0003
    store = ImageStore(blobs, Catalog.from_url(catalog_url))
    thumb = store.get_image(image_id)["variants"]["thumb"]
    assert (thumb["format"], thumb["rank"], thumb["frames"], thumb["placeholder"]) == ("webp", 0, 1, None)
    assert list(thumb["formats"]) == ["webp"] and thumb["format_in_key"] is False
    assert store.get_variant(image_id, "thumb")[0] == b"old single"
    assert store.get_variant(image_id, "thumb", "webp")[0] == b"old single"
    # a second format of the same preset can now be added beside it
    store.complete(image_id, [{"preset": "thumb", "data": b"new avif", "meta": dict(
        META, format="avif", mime_type="image/avif", rank=1)}])
    assert store.get_variant(image_id, "thumb", "avif")[0] == b"new avif"
    assert store.get_variant(image_id, "thumb")[0] == b"old single"
    store.catalog.engine.dispose()
