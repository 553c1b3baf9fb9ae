"""S3BlobStore against a real S3-compatible server (SeaweedFS, tests/s3server.py).

Run under ``nameko test``, i.e. with eventlet monkey-patching everything, as
the storage service runs: these tests also show that boto3 works on green
threads and that a dead object store fails calls in seconds.
"""
import socket
import time

import boto3
import eventlet
import pytest

from imagepipe.storage.blobs import BlobSettings
from imagepipe.storage.blobs import original_key, variant_key
from imagepipe.errors import NotFound, Unavailable
from imagepipe.ids import content_sha256
from imagepipe.storage.blobs.s3 import S3BlobStore, make_client
from tests.s3server import SeaweedS3

IMAGE_ID = "ab" * 16


def settings_for(server, bucket, **overrides):
    values = dict(bucket=bucket, prefix="tenant/blobs", endpoint_url=server.endpoint_url)
    values.update(overrides)
    return BlobSettings(**values)


@pytest.fixture
def blobs(s3_server, s3_bucket):
    return S3BlobStore.from_settings(settings_for(s3_server, s3_bucket), session=s3_server.session())


def test_put_then_get_returns_the_bytes_with_type_and_checksum(blobs, s3_server, s3_bucket):
    key = variant_key(IMAGE_ID, "thumb")
    data = b"\x00webp bytes\xff" * 1000
    blobs.put(key, data, "image/webp", content_sha256(data))

    assert blobs.get(key) == data
    assert blobs.exists(key)
    assert blobs.head(key) == {"content_type": "image/webp", "sha256": content_sha256(data),
                               "bytes": len(data)}
    # the object sits under the prefix, straight from a listing of the bucket
    assert s3_server.objects(s3_bucket) == ["tenant/blobs/variants/ab/{}/thumb".format(IMAGE_ID)]


def test_missing_blob_is_not_found_like_the_files_backend(blobs):
    key = original_key(IMAGE_ID)
    with pytest.raises(NotFound, match="missing"):
        blobs.get(key)
    assert not blobs.exists(key)
    blobs.delete(key)  # deleting nothing is fine


def test_same_write_twice_is_one_object(blobs, s3_server, s3_bucket):
    key = original_key(IMAGE_ID)
    blobs.put(key, b"same bytes", "image/jpeg")
    blobs.put(key, b"same bytes", "image/jpeg")
    assert blobs.get(key) == b"same bytes"
    assert s3_server.objects(s3_bucket) == ["tenant/blobs/" + key]


def test_overwrite_is_read_back_at_once(blobs):
    key = variant_key(IMAGE_ID, "medium")
    for round_number in range(5):
        data = "version {}".format(round_number).encode()
        blobs.put(key, data, "image/webp")
        assert blobs.get(key) == data
        assert blobs.head(key)["sha256"] == content_sha256(data)
    blobs.delete(key)
    with pytest.raises(NotFound):
        blobs.get(key)


def test_a_wrong_checksum_is_refused_by_the_server(blobs):
    key = original_key(IMAGE_ID)
    with pytest.raises(Unavailable, match="BadDigest"):
        blobs.put(key, b"bytes", "image/png", sha256=content_sha256(b"other bytes"))
    assert not blobs.exists(key)


@pytest.mark.parametrize("key", ["../x", "originals/../../x", "/abs", "a//b", "UPPER", "", None])
def test_keys_that_the_key_builders_cannot_produce_are_refused(blobs, key):
    with pytest.raises(NotFound):
        blobs.put(key, b"x")
    with pytest.raises(NotFound):
        blobs.get(key)


def test_bucket_is_created_when_allowed_and_refused_otherwise(s3_server, s3_bucket):
    with pytest.raises(Unavailable, match="does not exist"):
        S3BlobStore.from_settings(settings_for(s3_server, s3_bucket, create_bucket=False),
                                  session=s3_server.session())
    created = S3BlobStore.from_settings(settings_for(s3_server, s3_bucket),
                                        session=s3_server.session())
    # a second storage process finds it there
    again = S3BlobStore.from_settings(settings_for(s3_server, s3_bucket, create_bucket=False),
                                      session=s3_server.session())
    created.put(original_key(IMAGE_ID), b"shared")
    assert again.get(original_key(IMAGE_ID)) == b"shared"


def test_wrong_credentials_fail_at_start_up(s3_server, s3_bucket):
    stranger = boto3.session.Session(aws_access_key_id="nobody", aws_secret_access_key="wrong",
                                     region_name="us-east-1")
    with pytest.raises(Unavailable, match="denied"):
        S3BlobStore.from_settings(settings_for(s3_server, s3_bucket), session=stranger)


def test_many_green_threads_share_one_client(blobs):
    assert eventlet.patcher.is_monkey_patched("socket"), "run under `nameko test`"
    payloads = {variant_key(IMAGE_ID, "p{}".format(n)): bytes([n]) * (50_000 + n)
                for n in range(24)}

    def round_trip(key):
        blobs.put(key, payloads[key], "image/webp")
        return key, blobs.get(key)

    pool = eventlet.GreenPool(12)
    assert dict(pool.imap(round_trip, payloads)) == payloads


def test_a_stopped_server_fails_calls_within_seconds(tmp_path, s3_bucket):
    server = SeaweedS3(tmp_path).start()
    try:
        blobs = S3BlobStore.from_settings(settings_for(server, s3_bucket),
                                          session=server.session())
        blobs.put(original_key(IMAGE_ID), b"before the crash")
    finally:
        server.stop()
    for call in (lambda: blobs.get(original_key(IMAGE_ID)),
                 lambda: blobs.put(original_key(IMAGE_ID), b"after"),
                 lambda: blobs.exists(original_key(IMAGE_ID))):
        started = time.monotonic()
        with pytest.raises(Unavailable, match="unreachable"):
            call()
        # connection refused, retried twice with jittered back-off (< 1 s + 2 s)
        assert time.monotonic() - started < 5


def test_a_server_that_never_answers_times_out_without_blocking_the_hub(s3_bucket):
    """A black hole: the kernel accepts the connection, nobody ever answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    settings = BlobSettings(bucket=s3_bucket, endpoint_url="http://127.0.0.1:{}".format(
        listener.getsockname()[1]), read_timeout=1, max_attempts=2)
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s",
                                    region_name="us-east-1")
    blobs = S3BlobStore(make_client(settings, session), s3_bucket)
    ticks = []

    def heartbeat():  # stands for AMQP heartbeats and other requests
        while True:
            ticks.append(time.monotonic())
            eventlet.sleep(0.1)

    beating = eventlet.spawn(heartbeat)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            blobs.get(original_key(IMAGE_ID))
    finally:
        beating.kill()
        listener.close()
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 5  # two attempts of one second, plus back-off
    assert len(ticks) >= 8  # the hub kept running while boto3 waited
