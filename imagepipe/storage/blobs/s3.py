"""Blob storage in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, R2).

Chosen by ``BLOB_STORE=s3://bucket/prefix``; ``S3_ENDPOINT_URL`` points at a
non-AWS server.  Credentials come from boto3's standard chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, instance or
container roles), never from this project's configuration.

A PUT is atomic -- the object appears whole or not at all -- and the store
answers every read after a successful write with the new bytes (S3 has had
strong read-after-write consistency since 2020; MinIO, Ceph RGW and R2 give
the same), so the catalog row written after ``put`` never points at a blob a
reader cannot see.  Each object carries its content type and SHA-256; the
SHA-256 is also sent as the S3 checksum, so the server refuses bytes damaged
in transit, and reads ask for the checksum back so botocore verifies them.

storage runs on eventlet green threads: one boto3 client is shared by all of
them (clients are thread-safe; under monkey patching its sockets are green).
Short connect/read timeouts and few retries make a dead object store fail a
call with ``Unavailable`` in seconds instead of holding a storage worker.
"""
import base64
import hashlib
import logging
import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imagepipe.errors import NotFound, Unavailable
from imagepipe.ids import content_sha256
from imagepipe.storage.blobs import BlobStore

log = logging.getLogger(__name__)

# What original_key/variant_key produce; anything else is refused outright.
SAFE_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*(\.[a-z0-9]{1,8})?")
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
SHA256_METADATA = "sha256"  # x-amz-meta-sha256, hex like the catalog's


class S3BlobStore(BlobStore):
    kind = "s3"

    def __init__(self, client, bucket, prefix=""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_settings(cls, blob_settings, session=None):
        """A store for ``BlobSettings``; makes the bucket if allowed and missing."""
        store = cls(make_client(blob_settings, session), blob_settings.bucket, blob_settings.prefix)
        store.check_bucket(create=blob_settings.create_bucket, region=blob_settings.region)
        return store

    def object_key(self, key):
        if not isinstance(key, str) or not SAFE_KEY_RE.fullmatch(key):
            raise NotFound("invalid blob key")
        return self.prefix + "/" + key if self.prefix else key

    def put(self, key, data, content_type="application/octet-stream", sha256=None):
        sha256 = sha256 or content_sha256(data)
        with self._errors(key):
            self.client.put_object(
                Bucket=self.bucket, Key=self.object_key(key), Body=data,
                ContentType=content_type, Metadata={SHA256_METADATA: sha256},
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode("ascii"))

    def get(self, key):
        with self._errors(key):
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self.object_key(key), ChecksumMode="ENABLED")
            return answer["Body"].read()

    def head(self, key):
        """``{"content_type", "sha256", "bytes"}`` of a stored blob."""
        with self._errors(key):
            answer = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        return {"content_type": answer.get("ContentType"),
                "sha256": answer.get("Metadata", {}).get(SHA256_METADATA),
                "bytes": answer.get("ContentLength")}

    def exists(self, key):
        try:
            self.head(key)
        except NotFound:
            return False
        return True

    def delete(self, key):
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def open(self, key):
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]

    def digest(self, key):
        sha256, size = hashlib.sha256(), 0
        body = self.open(key)
        try:
            with self._errors(key):
                for chunk in body.iter_chunks(1024 * 1024):
                    sha256.update(chunk)
                    size += len(chunk)
        finally:
            body.close()
        return size, sha256.hexdigest()

    def promote(self, source, target, content_type, sha256, size=None):
        # a server-side copy: the bytes never come through this process; the
        # copy gets the type, hash and checksum put() gives an object
        with self._errors(source):
            self.client.copy_object(
                Bucket=self.bucket, Key=self.object_key(target),
                CopySource={"Bucket": self.bucket, "Key": self.object_key(source)},
                MetadataDirective="REPLACE", ContentType=content_type,
                Metadata={SHA256_METADATA: sha256}, ChecksumAlgorithm="SHA256")
        self.delete(source)

    def stale_keys(self, prefix, older_than):
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than)
        full_prefix = self.object_key(prefix.rstrip("/")) + "/"
        keys = []
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full_prefix)
            for page in pages:
                keys.extend(prefix.rstrip("/") + "/" + item["Key"][len(full_prefix):]
                            for item in page.get("Contents", ()) if item["LastModified"] < cutoff)
        return keys

    def presign(self, key, access, expires_in):
        method = {"read": "get_object", "write": "put_object"}[access]
        with self._errors(key):
            return self.client.generate_presigned_url(
                method, Params={"Bucket": self.bucket, "Key": self.object_key(key)},
                ExpiresIn=int(expires_in))

    def check_bucket(self, create=False, region=""):
        """Fail at start-up, not on the first upload, if the bucket is unusable."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("403", "AccessDenied"):
                raise Unavailable(
                    "access to bucket {} denied: check the credentials; storage needs "
                    "s3:ListBucket on the bucket besides Get/Put/DeleteObject".format(
                        self.bucket)) from None
            if code not in MISSING_CODES and code != "NoSuchBucket":
                raise Unavailable("bucket {}: {}".format(self.bucket, _describe(exc))) from None
        except BotoCoreError as exc:
            raise Unavailable("object store unreachable ({})".format(_describe(exc))) from None
        if not create:
            raise Unavailable("bucket {} does not exist (S3_CREATE_BUCKET is off)".format(self.bucket))
        self._create_bucket(region)

    def _create_bucket(self, region):
        options = {"Bucket": self.bucket}
        if region and region != "us-east-1":  # us-east-1 refuses an explicit constraint
            options["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**options)
            log.info("created bucket %s", self.bucket)
        except ClientError as exc:
            # another storage process may have won the race
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise Unavailable("cannot create bucket {}: {}".format(
                    self.bucket, _describe(exc))) from None
        except BotoCoreError as exc:
            raise Unavailable("object store unreachable ({})".format(_describe(exc))) from None

    @contextmanager
    def _errors(self, key):
        """A missing object is NotFound; anything else the store does is Unavailable."""
        try:
            yield
        except ClientError as exc:
            if _error_code(exc) in MISSING_CODES:
                raise NotFound("blob {} is missing".format(key)) from None
            raise Unavailable("object store: {}".format(_describe(exc))) from None
        except BotoCoreError as exc:
            raise Unavailable("object store unreachable ({})".format(_describe(exc))) from None


def make_client(blob_settings, session=None):
    """A boto3 S3 client with timeouts that fail fast and bounded retries."""
    session = session or boto3.session.Session()
    config = Config(
        connect_timeout=blob_settings.connect_timeout,
        read_timeout=blob_settings.read_timeout,
        # "standard" retries throttling and 5xx with jittered back-off
        retries={"mode": "standard", "total_max_attempts": blob_settings.max_attempts},
        # a custom endpoint (MinIO, RGW, SeaweedFS) rarely has per-bucket DNS names
        s3={"addressing_style": "path" if blob_settings.endpoint_url else "auto"},
    )
    return session.client(
        "s3",
        endpoint_url=blob_settings.endpoint_url or None,
        region_name=blob_settings.region or None,
        config=config,
    )


def _error_code(exc):
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc):
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return "{} {}".format(error.get("Code", "?"), error.get("Message", "")).strip()
    return "{}: {}".format(type(exc).__name__, exc)
