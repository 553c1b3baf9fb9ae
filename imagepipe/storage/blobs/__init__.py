"""Where storage keeps blobs: the interface, the key scheme, the settings, the choice.

Two backends implement :class:`BlobStore`: files under ``STORAGE_ROOT``
(``blobs.files``, the embedded default) and an S3-compatible object store
(``blobs.s3``: AWS S3, MinIO, Ceph RGW, R2, SeaweedFS).  The choice is
configuration alone: ``BLOB_STORE`` empty means files, ``s3://bucket/prefix``
means S3.  Both use the keys of ``original_key``/``variant_key``, built only
from validated ids and preset names.
"""
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from imagepipe.configvalues import as_bool, positive
from imagepipe.errors import NotFound
from imagepipe.ids import check_image_id, check_preset_name
from imagepipe.rendering.presets import OUTPUT_FORMATS

S3_SCHEME = "s3://"
# S3's own rule for bucket names (no dots: they break TLS with virtual hosts).
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$")


def original_key(image_id):
    check_image_id(image_id)
    return "originals/{}/{}".format(image_id[:2], image_id)


def variant_key(image_id, preset, fmt=None):
    """``variants/ab/<id>/<preset>.<format>``; without ``fmt``, the key of a
    rendition stored before presets had several formats (still read)."""
    check_image_id(image_id)
    check_preset_name(preset)
    key = "variants/{}/{}/{}".format(image_id[:2], image_id, preset)
    if fmt is None:
        return key
    if fmt not in OUTPUT_FORMATS:
        raise NotFound("no rendition format {!r}".format(str(fmt)[:20]))
    return "{}.{}".format(key, fmt)


def stored_variant_key(image_id, preset, meta):
    """The key a catalog rendition (``meta`` from the record) was stored under."""
    return variant_key(image_id, preset, meta["format"] if meta.get("format_in_key", True) else None)


class BlobStore(ABC):
    """Bytes by key.  Every write replaces the whole blob atomically.

    Besides the four basic operations, a store supports the claim-check path
    (``imagepipe.storage.grants``): others write to staging keys, storage
    checks what they wrote (``digest``) and moves it into place (``promote``),
    and stale staging keys are swept (``stale_keys``).
    """

    # "files": others reach the blobs on a shared volume, under this root;
    # "s3": through presigned URLs (``presign``)
    kind = "files"

    @abstractmethod
    def put(self, key, data, content_type="application/octet-stream", sha256=None):
        """Store ``data`` under ``key``, durably, before returning."""

    @abstractmethod
    def get(self, key):
        """The bytes under ``key``; ``errors.NotFound`` if there are none."""

    @abstractmethod
    def exists(self, key):
        """Whether ``key`` holds a blob."""

    @abstractmethod
    def delete(self, key):
        """Remove ``key``; removing a missing key is not an error."""

    @abstractmethod
    def open(self, key):
        """A binary stream of the blob (``errors.NotFound`` if there is none); close it."""

    @abstractmethod
    def digest(self, key):
        """``(size, sha256 hex)`` of the stored bytes, read back; ``errors.NotFound`` if none."""

    @abstractmethod
    def promote(self, source, target, content_type, sha256, size=None):
        """Move blob ``source`` to ``target`` durably (replacing it); ``source`` is gone after.

        ``content_type``, ``sha256`` and ``size`` describe the checked bytes
        (``size`` only for whoever meters writes).
        """

    @abstractmethod
    def stale_keys(self, prefix, older_than):
        """Keys under ``prefix`` last written more than ``older_than`` seconds ago."""

    def presign(self, key, access, expires_in):
        """A URL that lets anyone holding it ``read`` or ``write`` the key; None if not supported."""
        return None


@dataclass(frozen=True)
class BlobSettings:
    """``BLOB_STORE`` and the ``S3_*`` knobs, parsed and validated."""

    bucket: str = ""  # empty: files under STORAGE_ROOT
    prefix: str = ""
    endpoint_url: str = ""  # empty: AWS itself
    region: str = ""  # empty: the boto3 chain (AWS_REGION, ~/.aws/config)
    create_bucket: bool = True
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    max_attempts: int = 3

    @property
    def is_s3(self):
        return bool(self.bucket)

    @property
    def url(self):
        if not self.is_s3:
            return ""
        return S3_SCHEME + self.bucket + ("/" + self.prefix if self.prefix else "")

    @classmethod
    def from_config(cls, config):
        bucket, prefix = parse_blob_store_url(str(config.get("BLOB_STORE") or ""))
        return cls(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=str(config.get("S3_ENDPOINT_URL") or "").rstrip("/"),
            region=str(config.get("S3_REGION") or ""),
            create_bucket=as_bool(config.get("S3_CREATE_BUCKET"), "S3_CREATE_BUCKET", cls.create_bucket),
            connect_timeout=positive(config.get("S3_CONNECT_TIMEOUT"), "S3_CONNECT_TIMEOUT",
                                     cls.connect_timeout),
            read_timeout=positive(config.get("S3_READ_TIMEOUT"), "S3_READ_TIMEOUT", cls.read_timeout),
            max_attempts=int(positive(config.get("S3_MAX_ATTEMPTS"), "S3_MAX_ATTEMPTS",
                                      cls.max_attempts)),
        )


def parse_blob_store_url(url):
    """``""`` -> ``("", "")``; ``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    url = url.strip()
    if not url:
        return "", ""
    if not url.startswith(S3_SCHEME):
        raise ValueError("BLOB_STORE must be empty (files under STORAGE_ROOT) "
                         "or s3://bucket[/prefix], not {!r}".format(url))
    bucket, _, prefix = url[len(S3_SCHEME):].partition("/")
    prefix = prefix.strip("/")
    if not BUCKET_RE.match(bucket):
        raise ValueError("BLOB_STORE: {!r} is not a valid bucket name "
                         "(3-63 characters a-z, 0-9, -)".format(bucket))
    if prefix and not PREFIX_RE.match(prefix):
        raise ValueError("BLOB_STORE: invalid key prefix {!r}".format(prefix))
    return bucket, prefix


def open_blob_store(blob_settings, storage_root):
    """The configured backend.

    Backends import this module (the interface), so they are imported here,
    when chosen -- which also keeps boto3 out of processes that use files.
    """
    if blob_settings.is_s3:
        from imagepipe.storage.blobs.s3 import S3BlobStore

        return S3BlobStore.from_settings(blob_settings)
    from imagepipe.storage.blobs.files import FileBlobStore

    return FileBlobStore(storage_root)
