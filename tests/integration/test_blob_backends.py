"""The whole pipeline on each blob-store/catalog combination.

gateway + imaging + storage over real RabbitMQ (own vhost) and real HTTP;
blobs in files or in a real S3-compatible server (SeaweedFS, see
tests/s3server.py); the catalog in SQLite or in a scratch PostgreSQL database.
With S3, no blob may land under STORAGE_ROOT -- and with S3 + PostgreSQL,
nothing at all: such a storage process keeps nothing local and can be
replaced or run several times over.
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imagepipe.ids import content_sha256
from tests.helpers import ScratchDatabase, decode, make_jpeg, wait_for_status

PREFIX = "pipeline/blobs"


@dataclass
class Backend:
    """One blob store + catalog combination, and how to look inside it."""

    name: str
    storage_root: Path
    config: dict = field(default_factory=dict)
    s3_server: object = None
    bucket: str = ""

    @property
    def uses_s3(self):
        return self.s3_server is not None

    def blob_keys(self):
        """Every stored blob's key relative to the store's root or prefix."""
        if self.uses_s3:
            prefix = PREFIX + "/"
            keys = self.s3_server.objects(self.bucket)
            assert all(key.startswith(prefix) for key in keys), keys
            return sorted(key[len(prefix):] for key in keys)
        return sorted(str(path.relative_to(self.storage_root))
                      for folder in ("originals", "variants")
                      for path in (self.storage_root / folder).rglob("*") if path.is_file())

    def local_files(self):
        if not self.storage_root.exists():
            return []
        return sorted(str(path.relative_to(self.storage_root))
                      for path in self.storage_root.rglob("*") if path.is_file())

    def catalog_rows(self):
        """``{table: [its rows' ids]}`` of the catalog, read straight from the database."""
        import sqlalchemy as sa

        from imagepipe.storage.catalog import make_engine

        engine = make_engine(self.config.get("STORAGE_DB") or "sqlite:///{}".format(
            self.storage_root / "catalog.sqlite3"))
        try:
            with engine.connect() as conn:
                return {
                    "images": sorted(conn.execute(sa.text("SELECT id FROM images")).scalars()),
                    "variants": sorted(conn.execute(sa.text(
                        "SELECT image_id || '/' || preset FROM variants")).scalars()),
                }
        finally:
            engine.dispose()


@pytest.fixture(params=["files+sqlite+direct", "files+sqlite+rpc", "s3+sqlite+direct",
                        "s3+sqlite+rpc", "s3+postgresql+direct"])
def backend(request, tmp_path, monkeypatch, s3_bucket):
    """A store, a catalog, and how gateway and imaging reach the blobs: under
    storage's grants (the claim-check path) or with the bytes in the RPC calls."""
    blobs, catalog, access = request.param.split("+")
    backend = Backend(request.param, tmp_path / "storage", {"BLOB_ACCESS": access})
    if blobs == "s3":
        server = request.getfixturevalue("s3_server")
        backend.s3_server, backend.bucket = server, s3_bucket
        backend.config.update(server.pipeline_settings(s3_bucket, PREFIX))
        # as in production: credentials reach boto3 through its own chain
        for name, value in server.credentials.items():
            monkeypatch.setenv(name, value)
    if catalog == "postgresql":
        database = ScratchDatabase().__enter__()
        request.addfinalizer(database.__exit__)
        backend.config["STORAGE_DB"] = database.url
    return backend


@pytest.fixture
def pipeline_config(pipeline_config, backend):
    pipeline_config.update(backend.config)
    pipeline_config["STORAGE_ROOT"] = str(backend.storage_root)
    return pipeline_config


@pytest.fixture
def provider_logs(caplog):
    """INFO records of the providers, from before the services start."""
    caplog.set_level(logging.INFO, logger="services.extensions.providers")
    return caplog


def test_upload_process_download_on_every_backend(backend, provider_logs, pipeline, web):
    caplog = provider_logs
    data = make_jpeg(1600, 1200)
    response = web.post("/upload", files={"image": ("photo.jpg", data)})
    assert response.status_code == 202, response.text
    image_id = response.json()["id"]

    status = wait_for_status(web, image_id)
    assert status["status"] == "done", status
    # gateway and imaging each said once which way the bytes went
    path = "go directly to the blob store" if backend.name.endswith("direct") else "travel over RPC"
    said = [record.getMessage() for record in caplog.get_records("setup") + caplog.records
            if record.getMessage().split(": ", 1)[-1].startswith("image bytes")]
    assert len(said) == 2 and all(path in message for message in said), said
    expected_sizes = {"thumb": (256, 192), "medium": (1024, 768)}
    downloads = {}
    for preset, variant in status["variants"].items():
        download = web.get(variant["url"])
        assert download.status_code == 200
        assert download.headers["Content-Type"] == "image/webp"
        image = decode(download.content)
        assert (image.format, image.size) == ("WEBP", expected_sizes[preset])
        downloads[preset] = download.content
    assert set(downloads) == set(expected_sizes)
    assert web.get(status["original"]["url"]).content == data

    shard = image_id[:2]
    assert backend.blob_keys() == sorted(
        ["originals/{}/{}".format(shard, image_id)]
        + ["variants/{}/{}/{}.webp".format(shard, image_id, preset) for preset in expected_sizes])
    if backend.uses_s3:
        assert_objects_carry_type_and_checksum(backend, image_id, data, downloads)
        # no blob under STORAGE_ROOT; at most the SQLite catalog
        allowed = [] if "postgresql" in backend.name else [
            name for name in backend.local_files() if name.startswith("catalog.sqlite3")]
        assert backend.local_files() == allowed
        if "postgresql" in backend.name:
            assert not backend.storage_root.exists()


def assert_objects_carry_type_and_checksum(backend, image_id, original, renditions):
    client = backend.s3_server.client()
    shard = image_id[:2]
    expected = {"originals/{}/{}".format(shard, image_id): ("image/jpeg", original)}
    expected.update({"variants/{}/{}/{}.webp".format(shard, image_id, preset): ("image/webp", data)
                     for preset, data in renditions.items()})
    for key, (content_type, data) in expected.items():
        head = client.head_object(Bucket=backend.bucket, Key=PREFIX + "/" + key)
        assert head["ContentType"] == content_type
        assert head["Metadata"]["sha256"] == content_sha256(data)
        assert head["ContentLength"] == len(data)


def test_same_upload_twice_is_one_blob(backend, pipeline, web):
    data = make_jpeg(300, 300, color=(9, 8, 7))
    first = web.post("/upload", files={"image": ("a.jpg", data)}).json()
    second = web.post("/upload", files={"image": ("b.jpg", data)}).json()
    assert first["id"] == second["id"]
    wait_for_status(web, first["id"])
    originals = [key for key in backend.blob_keys() if key.startswith("originals/")]
    assert originals == ["originals/{}/{}".format(first["id"][:2], first["id"])]
