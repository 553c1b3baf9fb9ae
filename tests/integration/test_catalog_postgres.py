"""The storage model on PostgreSQL: migrations and concurrency.

Every store test runs on PostgreSQL too (tests/unit/test_store.py's
``catalog_url`` fixture is parametrized); here, what only a shared server
shows: several storage processes sharing one PostgreSQL must not lose an
update when they race on the same image.
"""
import threading

import pytest
import sqlalchemy as sa

from imagepipe.storage.blobs.files import FileBlobStore
from imagepipe.storage.catalog import Catalog
from imagepipe.storage.store import ImageStore
from tests.helpers import ORIGINAL_INFO as INFO
from tests.helpers import RENDITION_META as META
from tests.helpers import ScratchDatabase

pytestmark = pytest.mark.postgres


@pytest.fixture
def database():
    with ScratchDatabase() as database:
        yield database


@pytest.fixture
def store(tmp_path, database):
    catalog = Catalog.from_url(database.url)
    yield ImageStore(FileBlobStore(tmp_path / "blobs"), catalog)
    catalog.engine.dispose()


def test_schema_comes_from_the_migrations(store):
    from alembic.script import ScriptDirectory

    from imagepipe.storage.catalog import MIGRATIONS

    with store.catalog.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == \
            ScriptDirectory(str(MIGRATIONS)).get_current_head()
    # a second storage process starting on the same database changes nothing
    Catalog.from_url(str(store.catalog.engine.url.render_as_string(hide_password=False))).engine.dispose()


def test_racing_storage_processes_lose_no_update(database, tmp_path):
    """Many writers (separate engines, as separate hosts would be) race on one image."""
    stores = [ImageStore(FileBlobStore(tmp_path / "blobs"), Catalog.from_url(database.url))
              for _ in range(4)]
    image_id = stores[0].put_original(b"raced", INFO)[0]["id"]
    barrier = threading.Barrier(len(stores) * 2)
    errors = []

    def worker(store, preset, finish_as):
        try:
            barrier.wait()
            store.claim(image_id)
            if finish_as == "failed":
                store.finish(image_id, finish_as, "lost the race")
            store.complete(image_id, [{"preset": preset, "data": b"data-" + preset.encode(), "meta": META}])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(store, "p{}".format(i % 2), status))
               for store in stores for i, status in enumerate(("done", "failed"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    record = stores[0].get_image(image_id)
    assert record["status"] in ("done", "failed")
    assert 1 <= record["attempts"] <= 8
    # exactly one write per rendition, though 4 processes tried each
    assert {name: variant["writes"] for name, variant in record["variants"].items()} == {"p0": 1, "p1": 1}
    # and the terminal status never moves again
    for store in stores:
        store.finish(image_id, "done" if record["status"] == "failed" else "failed", "late")
        assert store.get_image(image_id)["status"] == record["status"]
    for store in stores:
        store.catalog.engine.dispose()
