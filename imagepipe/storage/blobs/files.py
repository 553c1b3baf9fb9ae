"""Blob storage on the local filesystem (the embedded default).

Writes are atomic and durable: the bytes go to a temporary file in the target
folder, are fsynced, and only then renamed over the final name (and the folder
fsynced), so a crash leaves either the old blob or the new one, never half.
Blobs written by others under a grant arrive the same way: fsynced in
``staging/`` by the writer, renamed into place by ``promote``.
"""
import hashlib
import os
import tempfile
import time

from imagepipe.errors import NotFound
from imagepipe.storage.blobs import BlobStore

READ_CHUNK = 1024 * 1024
STORE_ID_FILE = ".store-id"


class FileBlobStore(BlobStore):
    def __init__(self, root, fsync=True):
        self.root = os.path.abspath(root)
        self.fsync = fsync
        os.makedirs(self.root, exist_ok=True)

    def _path(self, key):
        # Keys are built by original_key/variant_key from validated parts;
        # this is a second line of defence against a path escaping the root.
        path = os.path.normpath(os.path.join(self.root, key))
        if not path.startswith(self.root + os.sep):
            raise NotFound("invalid blob key")
        return path

    def put(self, key, data, content_type="application/octet-stream", sha256=None):
        # The catalog records content type and SHA-256; a file needs neither.
        path = self._path(key)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                if self.fsync:
                    tmp.flush()
                    os.fsync(tmp.fileno())
            os.replace(tmp_path, path)
        except BaseException:
            _remove_quietly(tmp_path)
            raise
        if self.fsync:
            _fsync_dir(folder)

    def get(self, key):
        try:
            with open(self._path(key), "rb") as blob:
                return blob.read()
        except FileNotFoundError:
            raise NotFound("blob {} is missing".format(key)) from None

    def exists(self, key):
        return os.path.exists(self._path(key))

    def delete(self, key):
        _remove_quietly(self._path(key))

    def open(self, key):
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise NotFound("blob {} is missing".format(key)) from None

    def digest(self, key):
        sha256, size = hashlib.sha256(), 0
        with self.open(key) as blob:
            for chunk in iter(lambda: blob.read(READ_CHUNK), b""):
                sha256.update(chunk)
                size += len(chunk)
        return size, sha256.hexdigest()

    def promote(self, source, target, content_type=None, sha256=None, size=None):
        source_path, target_path = self._path(source), self._path(target)
        folder = os.path.dirname(target_path)
        os.makedirs(folder, exist_ok=True)
        try:
            os.replace(source_path, target_path)
        except FileNotFoundError:
            raise NotFound("blob {} is missing".format(source)) from None
        if self.fsync:
            _fsync_dir(folder)

    def stale_keys(self, prefix, older_than):
        folder = self._path(prefix.rstrip("/"))
        cutoff = time.time() - older_than
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        return [prefix.rstrip("/") + "/" + entry.name for entry in entries
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff]

    def free_bytes(self):
        """Free bytes for an unprivileged writer on the filesystem of the root."""
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def mark(self, store_id):
        """Write ``store_id`` to ``<root>/.store-id``: how others tell they see the same files."""
        path = os.path.join(self.root, STORE_ID_FILE)
        try:
            with open(path) as marker:
                if marker.read().strip() == store_id:
                    return
        except FileNotFoundError:
            pass
        fd, tmp_path = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "w") as tmp:
            tmp.write(store_id + "\n")
        os.replace(tmp_path, path)

    def ensure_folder(self, prefix):
        """Make ``prefix``'s folder (where others will write under grants)."""
        os.makedirs(self._path(prefix.rstrip("/")), exist_ok=True)


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
