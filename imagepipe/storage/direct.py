"""The grantee's side of the claim-check path: reading and writing blobs under grants.

The gateway writes originals and imaging reads them and writes renditions
without the bytes passing through RabbitMQ or the storage process
(``imagepipe.storage.grants`` is storage's side).  Two ways to the blobs:

- ``files``: the store is a folder shared with storage (the same
  ``STORAGE_ROOT`` volume); a grant's key is a path under it.  Writes create
  a new file (never follow or replace anything), fsync it, and stay in
  ``staging/``: only storage moves checked blobs into place.
- ``s3``: a grant carries a presigned URL; no object-store credentials here.

``DirectBlobs.for_process`` decides at start-up whether this process can use
either; where it cannot (another machine, no shared volume, no S3), callers
send bytes over RPC instead.
"""
import hashlib
import io
import logging
import os
import time

import requests

from imagepipe.errors import InvalidGrant, NotFound, Unavailable
from imagepipe.storage.grants import STAGING_PREFIX, WRITE, check_key

log = logging.getLogger(__name__)

STORE_ID_FILE = ".store-id"  # written by storage into the root of a files store
CHUNK = 1024 * 1024


class DirectBlobs:
    """Blob access under grants, for one kind of store."""

    def __init__(self, kind, root=None, store_id=None, timeout=10.0):
        self.kind = kind
        self.root = os.path.realpath(root) if root else None
        self.store_id = store_id
        self.timeout = timeout
        self.upload_grants = UploadGrants()

    @classmethod
    def for_process(cls, blob_settings, storage_root, mode="auto", timeout=10.0):
        """``(DirectBlobs or None, why)`` for this process's view of the store.

        ``mode``: ``auto`` (use direct access where the store is reachable),
        ``rpc`` (never), ``direct`` (required: ValueError if not possible).
        """
        if mode == "rpc":
            return None, "BLOB_ACCESS=rpc"
        if blob_settings.is_s3:
            return cls("s3", timeout=timeout), "blobs in {} through presigned URLs".format(blob_settings.url)
        marker = os.path.join(storage_root, STORE_ID_FILE)
        try:
            with open(marker) as marker_file:
                store_id = marker_file.read().strip()
        except OSError:
            if mode == "direct":
                raise ValueError("BLOB_ACCESS=direct but {} is not a storage folder (no {})"
                                 .format(storage_root, STORE_ID_FILE)) from None
            return None, "{} is not storage's folder here (no {})".format(storage_root, STORE_ID_FILE)
        return (cls("files", storage_root, store_id, timeout),
                "storage's folder shared at {}".format(os.path.abspath(storage_root)))

    def serves(self, access):
        """Whether storage's ``access()`` answer is the store this process reaches."""
        if access.get("kind") != self.kind:
            return False
        return self.kind == "s3" or access.get("store_id") == self.store_id

    # -- writing ---------------------------------------------------------------

    def write(self, grant, source):
        """Write the file-like ``source`` (from its start) under a write ``grant``; ``(size, sha256)``."""
        if grant.get("access") != WRITE or not str(grant.get("key", "")).startswith(STAGING_PREFIX):
            raise InvalidGrant("not a write grant for a staging key")
        source.seek(0)
        if self.kind == "s3":
            return self._put(grant, source)
        return self._write_file(self._path(grant), source)

    def _write_file(self, path, source):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o640)
        sha256, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb", closefd=True) as target:
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    sha256.update(chunk)
                    target.write(chunk)
                    size += len(chunk)
                target.flush()
                os.fsync(target.fileno())  # durable before storage is told: a 202 promises it
        except BaseException:
            _remove_quietly(path)
            raise
        return size, sha256.hexdigest()

    def _put(self, grant, source):
        sha256, size = hashlib.sha256(), 0
        for chunk in iter(lambda: source.read(CHUNK), b""):
            sha256.update(chunk)
            size += len(chunk)
        source.seek(0)
        try:
            response = requests.put(grant["url"], data=source, timeout=self.timeout,
                                    headers={"Content-Length": str(size)})
        except requests.RequestException as exc:
            raise Unavailable("object store unreachable ({})".format(type(exc).__name__)) from None
        if response.status_code >= 300:
            raise Unavailable("object store refused the write: HTTP {}".format(response.status_code))
        return size, sha256.hexdigest()

    # -- reading -------------------------------------------------------------------

    def read(self, grant):
        """The whole blob a read ``grant`` names, as bytes."""
        with self.open(grant) as blob:
            return blob.read()

    def open(self, grant):
        """A binary stream of the blob a read ``grant`` names; close it."""
        if self.kind == "s3":
            try:
                response = requests.get(grant["url"], stream=True, timeout=self.timeout)
            except requests.RequestException as exc:
                raise Unavailable("object store unreachable ({})".format(type(exc).__name__)) from None
            if response.status_code == 404:
                raise NotFound("blob {} is missing".format(grant.get("key")))
            if response.status_code >= 300:
                raise Unavailable("object store refused the read: HTTP {}".format(response.status_code))
            response.raw.decode_content = True
            return response.raw
        try:
            fd = os.open(self._path(grant), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound("blob {} is missing".format(grant.get("key"))) from None
        return os.fdopen(fd, "rb")

    def _path(self, grant):
        """The file a grant's key names, refusing anything that would leave the store."""
        key = check_key(grant.get("key"))
        path = os.path.join(self.root, *key.split("/"))
        folder = os.path.realpath(os.path.dirname(path))
        if os.path.commonpath([folder, self.root]) != self.root:
            raise InvalidGrant("the grant's key leads outside the store")
        return os.path.join(folder, os.path.basename(path))


class UploadGrants:
    """Write grants for new originals, fetched from storage a batch at a time.

    A grant names a fresh staging key and nothing is written until it is
    used, so spares cost nothing; asking for them in batches saves a storage
    round trip on almost every upload.  A spare close to its expiry is
    dropped: the write and the registration must fit before it.
    """

    def __init__(self, batch=16, margin=300.0, clock=time.time):
        self.batch = batch
        self.margin = margin
        self.clock = clock
        self._spares = []

    def take(self, storage):
        """One unused write grant; ``storage`` is the storage service (an RPC proxy)."""
        while self._spares:
            grant = self._spares.pop()
            if grant["expires"] - self.clock() > self.margin:
                return grant
        # not checked against this clock: a skewed one must not refuse storage's answer
        fresh = storage.grant_original_uploads(self.batch)
        self._spares.extend(fresh[1:])
        return fresh[0]

    def drop_spares(self):
        self._spares.clear()


def _remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def store_original(storage, blobs, data, info, callback_url=None, tenant=None):
    """Hand an upload's stored form to storage; return ``(record, created)``.

    With ``blobs`` the bytes are written under a grant and storage checks and
    registers them; without, they travel in the call.  ``storage`` is the
    storage service (an RPC proxy).
    """
    if blobs is None:
        return storage.put_original(data, info, callback_url, tenant)
    try:
        return _write_and_register(storage, blobs, data, info, callback_url, tenant)
    except InvalidGrant:
        # spares issued before storage's grant secret changed (a store wiped and
        # started afresh) are refused: once more, with grants fetched now
        blobs.upload_grants.drop_spares()
        return _write_and_register(storage, blobs, data, info, callback_url, tenant)


def _write_and_register(storage, blobs, data, info, callback_url, tenant):
    grant = blobs.upload_grants.take(storage)
    size, sha256 = blobs.write(grant, io.BytesIO(data))
    return storage.register_original(grant["token"], size, sha256, info, callback_url, tenant)
