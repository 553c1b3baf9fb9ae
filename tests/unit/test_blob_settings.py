"""BLOB_STORE and the S3_* knobs: parsing, validation, the backend they choose."""
import pytest

from imagepipe.storage.blobs import BlobSettings, BlobStore, open_blob_store, parse_blob_store_url
from imagepipe.storage.blobs.files import FileBlobStore
from imagepipe.settings import Settings
from tests.helpers import load_config


def test_empty_blob_store_means_files_under_storage_root(tmp_path):
    settings = Settings.from_config({"STORAGE_ROOT": str(tmp_path / "root"), "BLOB_STORE": ""})
    assert not settings.blobs.is_s3 and settings.blobs.url == ""
    blobs = open_blob_store(settings.blobs, settings.storage_root)
    assert isinstance(blobs, FileBlobStore) and isinstance(blobs, BlobStore)
    assert blobs.root == str(tmp_path / "root")


@pytest.mark.parametrize("url, expected", [
    ("s3://images", ("images", "")),
    ("s3://images/", ("images", "")),
    ("s3://images/prod/blobs/", ("images", "prod/blobs")),
    (" s3://my-bucket-2/a.b_c ", ("my-bucket-2", "a.b_c")),
])
def test_s3_urls_give_bucket_and_prefix(url, expected):
    assert parse_blob_store_url(url) == expected


@pytest.mark.parametrize("url", [
    "file:///data", "/data", "S3://images", "s3://", "s3://ab", "s3://Images",
    "s3://bucket.with.dots", "s3://-bucket", "s3://" + "b" * 64,
    "s3://images/../etc", "s3://images/a//b", "s3://images/space here",
])
def test_bad_blob_store_urls_fail_at_start_up(url):
    with pytest.raises(ValueError, match="BLOB_STORE"):
        Settings.from_config({"BLOB_STORE": url})


def test_s3_knobs_are_read_and_validated():
    blobs = Settings.from_config({
        "BLOB_STORE": "s3://images/p", "S3_ENDPOINT_URL": "http://minio:9000/",
        "S3_REGION": "eu-west-1", "S3_CREATE_BUCKET": "false", "S3_CONNECT_TIMEOUT": "0.5",
        "S3_READ_TIMEOUT": 3, "S3_MAX_ATTEMPTS": "4"}).blobs
    assert blobs == BlobSettings(bucket="images", prefix="p", endpoint_url="http://minio:9000",
                                 region="eu-west-1", create_bucket=False, connect_timeout=0.5,
                                 read_timeout=3.0, max_attempts=4)
    assert blobs.url == "s3://images/p"
    with pytest.raises(ValueError, match="S3_READ_TIMEOUT"):
        BlobSettings.from_config({"S3_READ_TIMEOUT": "-1"})
    with pytest.raises(ValueError, match="boolean"):
        BlobSettings.from_config({"S3_CREATE_BUCKET": "perhaps"})


def test_config_yaml_defaults_keep_blobs_in_files(monkeypatch):
    for variable in ("BLOB_STORE", "S3_ENDPOINT_URL", "S3_REGION", "S3_CREATE_BUCKET",
                     "S3_CONNECT_TIMEOUT", "S3_READ_TIMEOUT", "S3_MAX_ATTEMPTS"):
        monkeypatch.delenv(variable, raising=False)
    blobs = Settings.from_config(load_config()).blobs
    assert blobs == BlobSettings()
    assert not blobs.is_s3 and blobs.create_bucket
    # fail-fast defaults: one call gives up within seconds, not minutes
    assert blobs.max_attempts * (blobs.connect_timeout + blobs.read_timeout) <= 30
