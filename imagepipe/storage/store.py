"""The storage service's model: blobs plus the catalog that describes them.

Every write is idempotent.  An original is keyed by its content hash; a
rendition by (image, preset).  Writing what is already there is a no-op, so a
job delivered twice writes each rendition once.
"""
import logging

from imagepipe.errors import BadRequest, ImageNotFound, NotFound
from imagepipe.ids import check_image_id, check_preset_name, content_sha256, image_id_for
from imagepipe.records import FINISHED
from imagepipe.storage.blobs import open_blob_store, original_key, variant_key
from imagepipe.storage.catalog import Catalog

log = logging.getLogger(__name__)


class ImageStore:
    def __init__(self, blobs, catalog):
        self.blobs = blobs
        self.catalog = catalog

    @classmethod
    def from_settings(cls, settings):
        if settings.blobs.is_s3 and settings.storage_db.startswith("sqlite"):
            log.warning("blobs are in %s but the catalog is %s: this storage process "
                        "keeps state on local disk", settings.blobs.url, settings.storage_db)
        return cls(
            open_blob_store(settings.blobs, settings.storage_root),
            Catalog.from_url(settings.storage_db),
        )

    def put_original(self, data, info, callback_url=None):
        """Store uploaded bytes; return ``(record, created)``.

        The blob is durable before the catalog row exists, so a record never
        points at bytes that a crash could have lost.
        """
        if not isinstance(data, bytes) or not data:
            raise BadRequest("the image is empty")
        sha256 = content_sha256(data)
        image_id = image_id_for(sha256)
        key = original_key(image_id)
        if not self.blobs.exists(key):
            self.blobs.put(key, data, info["mime_type"], sha256)
        return self.catalog.add_image(image_id, sha256, info, len(data), callback_url)

    def get_original(self, image_id):
        check_image_id(image_id)
        self.catalog.get_image(image_id)  # 404 for unknown ids, not a missing blob
        return self.blobs.get(original_key(image_id))

    def get_image(self, image_id):
        return self.catalog.get_image(check_image_id(image_id))

    def list_images(self, limit=20, cursor=None):
        """``{"images": [...newest first], "next": cursor of the next page or None}``."""
        records, next_cursor = self.catalog.list_images(max(1, min(int(limit), 100)), cursor)
        return {"images": records, "next": next_cursor}

    def finish(self, image_id, status, error=None):
        return self.catalog.finish(check_image_id(image_id), status, error)

    def claim(self, image_id, retry_failed=False):
        """Start a processing attempt; return the record and, when there is work, the original.

        ``{"record": ..., "original": bytes or None}``: the original is left
        out for an image that is finished and not being reprocessed.
        """
        record = self.catalog.start_processing(check_image_id(image_id), retry_failed)
        has_work = record["status"] not in FINISHED or retry_failed
        return {"record": record, "original": self.blobs.get(original_key(image_id)) if has_work else None}

    def complete(self, image_id, renditions, replace=False):
        """Store every rendition, then mark the image done; return its record.

        ``renditions``: ``[{"preset", "data", "meta"}, ...]``.  The job's last
        round trip.  Blobs are durable before the one catalog transaction that lists them
        and marks the image done.  Idempotent: renditions already recorded are
        kept unless ``replace``, so a redelivered job may call it again.
        """
        existing = self.get_image(check_image_id(image_id))["variants"]
        written = {}
        for rendition in renditions:
            preset, data = rendition["preset"], rendition["data"]
            self._check_rendition(preset, data)
            if replace or preset not in existing:
                written[preset] = self._put_variant_blob(image_id, preset, data, rendition["meta"])
        try:
            return self.catalog.complete(image_id, written, replace)
        except ImageNotFound:
            # deleted while these were written: they must not outlive the image
            self._delete_blobs([variant_key(image_id, preset) for preset in written])
            raise

    @staticmethod
    def _check_rendition(preset, data):
        check_preset_name(preset)
        if not isinstance(data, bytes) or not data:
            raise BadRequest("rendition {!r} is empty".format(preset))

    def _put_variant_blob(self, image_id, preset, data, meta):
        """Write the blob; return the catalog's meta for it."""
        meta = dict(meta, bytes=len(data), sha256=content_sha256(data))
        self.blobs.put(variant_key(image_id, preset), data, meta["mime_type"], meta["sha256"])
        return meta

    def get_variant(self, image_id, preset):
        """Return ``(bytes, variant record)``."""
        record = self.get_image(image_id)
        check_preset_name(preset)
        variant = record["variants"].get(preset)
        if variant is None:
            raise NotFound("image {} has no rendition {!r}".format(image_id, preset))
        return self.blobs.get(variant_key(image_id, preset)), variant

    # -- erasure ------------------------------------------------------------

    def delete_image(self, image_id, presets=(), announce=None):
        """Erase an image: its original, every rendition, its catalog rows.

        Hidden first (reads answer 404 and a racing job's ``complete`` writes
        nothing from then on), then the blobs -- the recorded renditions and
        those of every name in ``presets``, in case a job wrote one it never
        got to record -- then ``announce(notice)`` (the ``image_deleted``
        event), then the rows.  A crash or a failed announcement leaves the
        row hidden and marked, and deleting again finishes the job
        (``unfinished_deletions``).  Returns the notice:
        ``{"id", "deleted_at", "callback_url"}``.
        """
        record = self.catalog.mark_deleted(check_image_id(image_id))
        names = sorted(set(record["variants"]) | set(presets))
        self._delete_blobs([original_key(image_id)] + [variant_key(image_id, name) for name in names])
        notice = {"id": image_id, "deleted_at": record["deleted_at"],
                  "callback_url": record["callback_url"]}
        if announce is not None:
            announce(notice)
        self.catalog.purge(image_id)
        log.info("deleted image %s (%d renditions)", image_id, len(record["variants"]))
        return notice

    def unfinished_deletions(self, older_than, limit=100):
        return self.catalog.unfinished_deletions(older_than, limit)

    def _delete_blobs(self, keys):
        for key in keys:
            self.blobs.delete(key)  # a missing blob is not an error

    # -- renditions of presets that changed ---------------------------------

    def prune_renditions(self, preset_names, limit=100):
        """Delete up to ``limit`` renditions of presets not in ``preset_names``; return how many.

        Blobs first, then rows: a crash in between leaves rows that the next
        prune finds again, never a blob nothing points to.
        """
        keys = self.catalog.stale_rendition_keys(preset_names, limit)
        self._delete_blobs([variant_key(image_id, preset) for image_id, preset in keys])
        self.catalog.remove_renditions(keys)
        return len(keys)

    def stalled_image_ids(self, older_than, limit=100):
        return self.catalog.stalled_image_ids(older_than, limit)

    def touch(self, image_id):
        self.catalog.touch(check_image_id(image_id))
