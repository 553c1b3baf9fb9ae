"""Blob storage on the local filesystem (the embedded default).

Writes are atomic and durable: the bytes go to a temporary file in the target
folder, are fsynced, and only then renamed over the final name (and the folder
fsynced), so a crash leaves either the old blob or the new one, never half.
"""
import os
import tempfile

from imagepipe.errors import NotFound
from imagepipe.storage.blobs import BlobStore


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
        fd, tmp_path = self._temporary_file(folder)
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
        path = self._path(key)
        _remove_quietly(path)
        self._remove_empty_folders(os.path.dirname(path))

    @staticmethod
    def _temporary_file(folder, attempts=2):
        for attempt in range(1, attempts + 1):
            try:
                os.makedirs(folder, exist_ok=True)
                return tempfile.mkstemp(dir=folder, prefix=".tmp-")
            except FileNotFoundError:
                # a delete removed the folder, empty, between makedirs and mkstemp
                if attempt == attempts:
                    raise

    def _remove_empty_folders(self, folder):
        """Remove ``folder`` and its parents below the root while they are empty.

        A deleted image leaves no folder named after it (its id is the hash of
        its content); shard folders go too once they hold nothing.
        """
        while folder.startswith(self.root + os.sep):
            try:
                os.rmdir(folder)
            except OSError:  # not empty (or gone already): the parents are not empty either
                return
            folder = os.path.dirname(folder)


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
