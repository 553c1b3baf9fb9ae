"""Grants (storage's side) and DirectBlobs (the grantee's side) on real files, and the
checks storage makes before it registers what a grantee wrote."""
import hashlib
import io
import os

import pytest

from imagepipe.errors import InvalidGrant, NotFound, QuotaExceeded
from imagepipe.storage.blobs import BlobSettings, original_key
from imagepipe.storage.blobs.files import FileBlobStore
from imagepipe.storage.catalog import Catalog
from imagepipe.storage.direct import DirectBlobs, UploadGrants, store_original
from imagepipe.storage.grants import READ, WRITE, GrantSigner, check_key
from imagepipe.storage.limits import StorageLimits
from imagepipe.storage.store import MAX_UPLOAD_GRANTS, ImageStore

SECRET = b"s" * 32
INFO = {"format": "PNG", "mime_type": "image/png", "width": 1, "height": 1, "frames": 1}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def store(tmp_path):
    return ImageStore(FileBlobStore(tmp_path / "store"), Catalog.from_url("sqlite://"))


@pytest.fixture
def direct(store):
    """What a gateway or imaging process on the same volume gets."""
    blobs, why = DirectBlobs.for_process(BlobSettings(), store.blobs.root)
    assert blobs is not None and blobs.serves(store.access()), why
    return blobs


def test_a_grant_round_trips_and_names_its_key():
    signer = GrantSigner(SECRET)
    grant = signer.issue(WRITE, "staging/" + "a" * 32)
    verified = signer.verify(grant["token"], WRITE)
    assert (verified.access, verified.key) == (WRITE, "staging/" + "a" * 32)


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),   # signature
    lambda token: "x" + token[1:],                                        # payload
    lambda token: GrantSigner(b"t" * 32).issue(WRITE, "staging/" + "b" * 32)["token"],  # another store
    lambda token: "no-dot-here",
    lambda token: None,
])
def test_forged_grants_are_refused(tamper):
    signer = GrantSigner(SECRET)
    token = signer.issue(WRITE, "staging/" + "a" * 32)["token"]
    with pytest.raises(InvalidGrant):
        signer.verify(tamper(token), WRITE)


def test_an_expired_grant_or_one_for_other_access_is_refused():
    clock = Clock()
    signer = GrantSigner(SECRET, ttl=60, clock=clock)
    token = signer.issue(WRITE, "staging/" + "a" * 32)["token"]
    with pytest.raises(InvalidGrant, match="is for write, not read"):
        signer.verify(token, READ)
    clock.now += 61
    with pytest.raises(InvalidGrant, match="expired"):
        signer.verify(token, WRITE)


@pytest.mark.parametrize("key", [
    "../etc/passwd", "staging/../../etc/passwd", "/etc/passwd", "staging/" + "a" * 31,
    "staging/" + "A" * 32, "originals/aa/" + "a" * 32 + "/..", "catalog.sqlite3",
    "variants/aa/" + "a" * 32 + "/thumb/../../x", "staging/" + "a" * 32 + "\n", "", None,
])
def test_no_grant_can_name_a_path_outside_the_store(key):
    with pytest.raises(InvalidGrant):
        check_key(key)
    with pytest.raises((InvalidGrant, ValueError)):
        GrantSigner(SECRET).issue(WRITE, key)


def test_the_grantee_writes_only_new_files_in_staging_and_follows_no_link(store, direct, tmp_path):
    grant = store.grant_original_upload()
    assert grant["key"].startswith("staging/")
    size, sha256 = direct.write(grant, io.BytesIO(b"png bytes"))
    assert (size, sha256) == (9, hashlib.sha256(b"png bytes").hexdigest())
    with pytest.raises(FileExistsError):  # a grant writes one object, once
        direct.write(grant, io.BytesIO(b"again"))
    # a link planted at a granted name is not followed
    other = store.grant_original_upload()
    target = tmp_path / "outside"
    os.symlink(target, os.path.join(store.blobs.root, other["key"]))
    with pytest.raises(OSError):
        direct.write(other, io.BytesIO(b"x"))
    assert not target.exists()
    # read grants are not write grants, and keys outside staging are never written
    with pytest.raises(InvalidGrant):
        direct.write(dict(grant, access="read"), io.BytesIO(b"x"))
    with pytest.raises(InvalidGrant):
        direct.write(dict(grant, key=original_key("a" * 32)), io.BytesIO(b"x"))


def test_storage_registers_only_what_matches_the_declaration(store, direct):
    grant = store.grant_original_upload()
    size, sha256 = direct.write(grant, io.BytesIO(b"the real bytes"))
    with pytest.raises(InvalidGrant, match="not the declared"):
        store.register_original(grant["token"], size, "0" * 64, INFO)
    # the mismatched blob is gone and nothing was recorded
    assert not os.path.exists(os.path.join(store.blobs.root, grant["key"]))
    assert store.list_images()["images"] == []
    with pytest.raises(InvalidGrant, match="nothing was written"):
        store.register_original(store.grant_original_upload()["token"], 1, "0" * 64, INFO)


def test_a_registered_original_is_moved_into_place_and_readable_under_a_read_grant(store, direct):
    record, created = store_original(store, direct, b"png bytes", INFO)
    assert created and record["original"]["sha256"] == hashlib.sha256(b"png bytes").hexdigest()
    assert os.listdir(os.path.join(store.blobs.root, "staging")) == []
    granted = store.grant_read(record["id"], "original")
    assert direct.read(granted["grant"]) == b"png bytes"
    # the same bytes again: one blob, the staged copy dropped
    again, created = store_original(store, direct, b"png bytes", INFO)
    assert not created and again["id"] == record["id"]
    assert os.listdir(os.path.join(store.blobs.root, "staging")) == []


def test_a_registration_delivered_again_records_the_original_it_moved_into_place(store, direct):
    """Storage died after moving the staged blob, before answering: the broker
    delivers the same call again, which must not refuse it (nor strand the blob)."""
    grant = store.grant_original_upload()
    size, sha256 = direct.write(grant, io.BytesIO(b"png bytes"))
    record, created = store.register_original(grant["token"], size, sha256, INFO)
    assert created
    again, created = store.register_original(grant["token"], size, sha256, INFO)
    assert (again, created) == (record, False)
    # died before the catalog row was written: the call delivered again writes it
    grant = store.grant_original_upload()
    size, sha256 = direct.write(grant, io.BytesIO(b"other bytes"))
    image_id = sha256[:32]
    store.blobs.promote(grant["key"], original_key(image_id), "image/png", sha256, size)
    record, created = store.register_original(grant["token"], size, sha256, INFO)
    assert created and record["id"] == image_id and record["status"] == "pending"
    assert store.get_original(image_id) == b"other bytes"
    # a grant nothing was written under is refused, stored bytes declared or not
    with pytest.raises(InvalidGrant, match="nothing was written"):
        store.register_original(store.grant_original_upload()["token"], size + 1, sha256, INFO)
    with pytest.raises(InvalidGrant, match="nothing was written"):
        store.register_original(store.grant_original_upload()["token"], size, sha256, INFO,
                                tenant="alice")


def test_without_direct_access_the_bytes_travel_in_the_call(store):
    record, created = store_original(store, None, b"rpc bytes", INFO)
    assert created and store.get_original(record["id"]) == b"rpc bytes"


def test_a_process_without_the_shared_volume_falls_back_to_rpc(tmp_path, store):
    blobs, why = DirectBlobs.for_process(BlobSettings(), str(tmp_path / "elsewhere"))
    assert blobs is None and "not storage's folder" in why
    blobs, why = DirectBlobs.for_process(BlobSettings(), store.blobs.root, mode="rpc")
    assert blobs is None and why == "BLOB_ACCESS=rpc"
    with pytest.raises(ValueError, match="BLOB_ACCESS=direct"):
        DirectBlobs.for_process(BlobSettings(), str(tmp_path / "elsewhere"), mode="direct")
    # another store's marker: storage's answer tells them apart
    stranger = FileBlobStore(tmp_path / "stranger")
    stranger.mark("f" * 32)
    blobs, _ = DirectBlobs.for_process(BlobSettings(), stranger.root)
    assert not blobs.serves(store.access())


def test_claim_and_complete_under_grants(store, direct):
    record, _ = store_original(store, None, b"original", INFO)
    claimed = store.claim(record["id"], grants=2)
    assert direct.read(claimed["original"]) == b"original"
    first, _unused = claimed["renditions"]
    meta = {"format": "webp", "mime_type": "image/webp", "width": 1, "height": 1}
    size, sha256 = direct.write(first, io.BytesIO(b"thumb"))
    done = store.complete(record["id"], [
        {"preset": "thumb", "meta": meta, "grant": first["token"], "bytes": size, "sha256": sha256}])
    assert done["status"] == "done" and done["variants"]["thumb"]["sha256"] == sha256
    assert store.get_variant(record["id"], "thumb")[0] == b"thumb"
    # a grant is single-use in effect: its staged blob is gone once registered
    with pytest.raises(InvalidGrant, match="nothing was written"):
        store.complete(record["id"], [
            {"preset": "thumb", "meta": meta, "grant": first["token"], "bytes": size,
             "sha256": sha256}], replace=True)
    # a finished image hands out no grants
    assert store.claim(record["id"], grants=2) == {
        "record": store.get_image(record["id"]), "original": None, "renditions": []}


def test_abandoned_staged_blobs_are_swept(tmp_path):
    store = ImageStore(FileBlobStore(tmp_path / "store"), Catalog.from_url("sqlite://"),
                       StorageLimits(staging_max_age=60))
    blobs, _ = DirectBlobs.for_process(BlobSettings(), store.blobs.root)
    fresh, stale = store.grant_original_upload(), store.grant_original_upload()
    blobs.write(fresh, io.BytesIO(b"fresh"))
    blobs.write(stale, io.BytesIO(b"stale"))
    stale_path = os.path.join(store.blobs.root, stale["key"])
    os.utime(stale_path, (0, 0))  # written long ago by a gateway that died
    assert store.sweep_staging() == 1
    assert not os.path.exists(stale_path)
    assert os.path.exists(os.path.join(store.blobs.root, fresh["key"]))


def test_quota_and_disk_floor_refuse_before_anything_is_stored(tmp_path):
    store = ImageStore(FileBlobStore(tmp_path / "store"), Catalog.from_url("sqlite://"),
                       StorageLimits(tenant_quota_bytes=10))
    blobs, _ = DirectBlobs.for_process(BlobSettings(), store.blobs.root)
    store_original(store, blobs, b"123456", INFO, tenant="alice")
    with pytest.raises(QuotaExceeded):
        store_original(store, blobs, b"7890123", INFO, tenant="alice")
    assert os.listdir(os.path.join(store.blobs.root, "staging")) == []  # nothing half-written
    store_original(store, blobs, b"7890123", INFO, tenant="bob")  # another key's quota
    floor = ImageStore(FileBlobStore(tmp_path / "floor"), Catalog.from_url("sqlite://"),
                       StorageLimits(min_free_bytes=2**62))
    with pytest.raises(Exception) as refused:
        floor.put_original(b"png", INFO)
    assert refused.value.code == "insufficient_storage" and refused.value.http_status == 507
    with pytest.raises(NotFound):
        floor.get_image("0" * 32)


class CountingStorage:
    """The storage service as the gateway sees it, counting its round trips."""

    def __init__(self, store):
        self.store = store
        self.calls = 0

    def grant_original_uploads(self, count):
        self.calls += 1
        return self.store.grant_original_uploads(count)


def test_write_grants_for_uploads_come_a_batch_per_round_trip_and_each_is_used_once(store):
    storage, clock = CountingStorage(store), Clock()
    grants = UploadGrants(batch=4, margin=300.0, clock=clock)
    taken = [grants.take(storage) for _ in range(9)]
    assert storage.calls == 3
    assert len({grant["key"] for grant in taken}) == 9
    assert len(store.grant_original_uploads(10_000)) == MAX_UPLOAD_GRANTS


def test_a_spare_write_grant_close_to_its_expiry_is_dropped(store):
    storage, clock = CountingStorage(store), Clock()
    grants = UploadGrants(batch=4, margin=300.0, clock=clock)
    first = grants.take(storage)
    clock.now = first["expires"] - 299  # the spares now expire within the margin
    fresh = grants.take(storage)
    assert storage.calls == 2 and fresh["key"] != first["key"]
    # storage's own clock decides whether a fresh grant is valid, not this one
    clock.now = fresh["expires"] + 3600
    assert grants.take(storage)["token"]


def test_spare_write_grants_from_before_a_new_grant_secret_are_replaced_once(store, direct):
    store_original(store, direct, b"first bytes", INFO)  # the gateway now holds spares
    store.grants = GrantSigner(b"n" * 32)  # storage started afresh on a wiped store
    record, created = store_original(store, direct, b"second bytes", INFO)
    assert created and store.get_image(record["id"])["id"] == record["id"]
