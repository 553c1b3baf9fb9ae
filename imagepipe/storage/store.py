"""The storage service's model: blobs plus the catalog that describes them.

Every write is idempotent.  An original is keyed by its content hash (and
its tenant, see ``ids.image_id_for``); a rendition by (image, preset, format).
Writing what is already there is a no-op, so a job delivered twice writes
each rendition once.

Bytes arrive two ways.  On the claim-check path (``imagepipe.storage.grants``)
the gateway and imaging write blobs themselves under write grants, and
storage checks each (size and SHA-256 against what the writer declared)
before moving it into place and recording it; it hands out read grants for
originals the same way.  Where a service cannot reach the blob store, it
sends the bytes in the RPC call instead (``put_original``, ``claim`` and
``complete`` without grants).
"""
import logging

from imagepipe.errors import (
    BadRequest, Conflict, ImageNotFound, InsufficientStorage, InvalidGrant, NotFound,
    QuotaExceeded)
from imagepipe.ids import check_image_id, check_preset_name, content_sha256, image_id_for
from imagepipe.records import FINISHED
from imagepipe.storage.blobs import open_blob_store, original_key, stored_variant_key, variant_key
from imagepipe.storage.catalog import Catalog
from imagepipe.storage.grants import READ, STAGING_PREFIX, WRITE, GrantSigner, staging_key
from imagepipe.storage.limits import StorageLimits
from imagepipe.storage.deliveries import DeliveryLedger

log = logging.getLogger(__name__)

GRANT_SECRET = "grants"
# one job's renditions: every preset in every format (more than any sane config)
MAX_RENDITION_GRANTS = 256
MAX_UPLOAD_GRANTS = 64  # spares a gateway may hold


class ImageStore:
    def __init__(self, blobs, catalog, limits=StorageLimits(), grants=None):
        self.blobs = blobs
        self.catalog = catalog
        self.limits = limits
        self.grants = grants or GrantSigner(catalog.secret(GRANT_SECRET))
        if blobs.kind == "files":
            blobs.ensure_folder(STAGING_PREFIX)
            blobs.mark(self.access()["store_id"])

    @classmethod
    def from_settings(cls, settings):
        if settings.blobs.is_s3 and settings.storage_db.startswith("sqlite"):
            log.warning("blobs are in %s but the catalog is %s: this storage process "
                        "keeps state on local disk", settings.blobs.url, settings.storage_db)
        return cls(
            open_blob_store(settings.blobs, settings.storage_root),
            Catalog.from_url(settings.storage_db),
            settings.storage_limits,
        )

    # -- originals -------------------------------------------------------------

    def put_original(self, data, info, callback_url=None, tenant=None):
        """Store uploaded bytes sent in the call; return ``(record, created)``.

        The blob is durable before the catalog row exists, so a record never
        points at bytes that a crash could have lost.
        """
        if not isinstance(data, bytes) or not data:
            raise BadRequest("the image is empty")
        sha256 = content_sha256(data)
        image_id = image_id_for(sha256, tenant)
        key = original_key(image_id)
        wrote = not self.blobs.exists(key)
        if wrote:
            self.check_room(len(data), tenant)
            self.blobs.put(key, data, info["mime_type"], sha256)
        return self._add_image(key, wrote, image_id, sha256, info, len(data), callback_url, tenant)

    def grant_original_upload(self):
        """A write grant for one new original (a fresh staging key)."""
        return self._grant(WRITE, staging_key())

    def grant_original_uploads(self, count):
        """``count`` write grants for new originals (at most MAX_UPLOAD_GRANTS), for a
        gateway that keeps a few at hand instead of asking once per upload."""
        return [self.grant_original_upload() for _ in range(max(1, min(int(count), MAX_UPLOAD_GRANTS)))]

    def register_original(self, token, size, sha256, info, callback_url=None, tenant=None):
        """Record the original written under ``token``; return ``(record, created)``.

        The staged blob must be exactly ``size`` bytes with SHA-256 ``sha256``;
        otherwise it is deleted and nothing is recorded.  The same call again,
        once the first moved the blob into place (the broker redelivers a call
        whose storage process died before answering), records it as well.
        """
        image_id = image_id_for(sha256, tenant)
        key = original_key(image_id)
        staged = self._checked_staged_blob(token, size, sha256, promoted_to=key)
        wrote = staged is not None and not self.blobs.exists(key)
        if staged is None:
            pass  # moved into place by this very call, delivered before
        elif not wrote:
            self.blobs.delete(staged)  # the same bytes are stored already
        else:
            try:
                self.check_room(size, tenant)
            except InsufficientStorage:
                self.blobs.delete(staged)
                raise
            self.blobs.promote(staged, key, info["mime_type"], sha256, size)
        return self._add_image(key, wrote, image_id, sha256, info, size, callback_url, tenant)

    def _add_image(self, key, wrote, image_id, *record):
        try:
            return self.catalog.add_image(image_id, *record)
        except Conflict:
            # the image is being deleted this instant: a blob written now would outlive it
            if wrote:
                self.blobs.delete(key)
            raise

    def check_room(self, size, tenant=None):
        """``InsufficientStorage`` if ``size`` more bytes would cross the disk floor or the quota."""
        if self.limits.min_free_bytes and self.blobs.kind == "files":
            free = self.blobs.free_bytes()
            if free - size < self.limits.min_free_bytes:
                raise InsufficientStorage(
                    "the store is nearly full ({} MB free, {} MB kept free); try again later"
                    .format(free // 2**20, self.limits.min_free_bytes // 2**20))
        if self.limits.tenant_quota_bytes and tenant is not None:
            used = self.catalog.tenant_bytes(tenant)
            if used + size > self.limits.tenant_quota_bytes:
                raise QuotaExceeded("this key's images use {} of its {} bytes; delete some first"
                                    .format(used, self.limits.tenant_quota_bytes))

    def get_original(self, image_id, tenant=None):
        check_image_id(image_id)
        self.catalog.get_image(image_id, tenant)  # 404 for unknown ids, not a missing blob
        return self.blobs.get(original_key(image_id))

    def get_image(self, image_id, tenant=None):
        return self.catalog.get_image(check_image_id(image_id), tenant)

    def list_images(self, limit=20, cursor=None, tenant=None):
        """``{"images": [...newest first], "next": cursor of the next page or None}``."""
        records, next_cursor = self.catalog.list_images(max(1, min(int(limit), 100)), cursor, tenant)
        return {"images": records, "next": next_cursor}

    def grant_read(self, image_id, name, tenant=None, fmt=None):
        """``{"meta": the blob's catalog entry, "grant": a read grant}`` for ``original``
        or a preset (in its format ``fmt``; None: its preferred one)."""
        record = self.get_image(image_id, tenant)
        if name == "original":
            return {"meta": record["original"], "grant": self._grant(READ, original_key(image_id))}
        variant = record["variants"].get(check_preset_name(name))
        if variant is not None and fmt is not None:
            variant = variant["formats"].get(fmt)
        if variant is None:
            raise NotFound("image {} has no rendition {!r}{}".format(
                image_id, name, " in {}".format(str(fmt)[:20]) if fmt else ""))
        return {"meta": variant,
                "grant": self._grant(READ, stored_variant_key(image_id, name, variant))}

    # -- an imaging job ----------------------------------------------------------

    def finish(self, image_id, status, error=None):
        return self.catalog.finish(check_image_id(image_id), status, error)

    def claim(self, image_id, retry_failed=False, grants=None):
        """Start a processing attempt; return the record and, when there is work, the original.

        Without ``grants``: ``{"record", "original": bytes or None}``.  With
        ``grants`` (the claim-check path: how many renditions the job may
        write): ``{"record", "original": a read grant or None, "renditions":
        [write grant, ...]}``; ``complete`` says which rendition each holds.
        The original is left out for an image that is finished and not being
        reprocessed.
        """
        record = self.catalog.start_processing(check_image_id(image_id), retry_failed)
        has_work = record["status"] not in FINISHED or retry_failed
        if grants is None:
            return {"record": record,
                    "original": self.blobs.get(original_key(image_id)) if has_work else None}
        if not has_work:
            return {"record": record, "original": None, "renditions": []}
        return {"record": record, "original": self._grant(READ, original_key(image_id)),
                "renditions": [self._grant(WRITE, staging_key())
                               for _ in range(min(int(grants), MAX_RENDITION_GRANTS))]}

    def complete(self, image_id, renditions, replace=False):
        """Store every rendition, then mark the image done; return its record.

        ``renditions``: ``[{"preset", "meta", "data"}]`` (bytes in the call)
        or ``[{"preset", "meta", "grant", "bytes", "sha256"}]`` (written under
        a grant from ``claim``).  The job's last round trip.  Blobs are
        durable before the one catalog transaction that lists them and marks
        the image done.  Idempotent: renditions already recorded are kept
        unless ``replace``, so a redelivered job may call it again.
        """
        try:
            existing = self.get_image(check_image_id(image_id))["variants"]
        except ImageNotFound:
            # deleted before the job got here: what it wrote under grants goes too
            self._discard_staged(renditions)
            raise
        written = []
        for rendition in renditions:
            preset = check_preset_name(rendition["preset"])
            stored_formats = existing.get(preset, {}).get("formats", {})
            keep = rendition["meta"]["format"] in stored_formats and not replace
            if "grant" in rendition:
                written_meta = self._register_rendition(image_id, rendition, discard=keep)
            elif keep:
                continue
            else:
                written_meta = self._put_rendition(image_id, rendition)
            if written_meta is not None:
                written.append((preset, written_meta))
        try:
            return self.catalog.complete(image_id, written, replace)
        except ImageNotFound:
            # deleted while these were written: they must not outlive the image
            self._delete_blobs([variant_key(image_id, preset, meta["format"])
                                for preset, meta in written])
            raise

    def _discard_staged(self, renditions):
        for rendition in renditions:
            if "grant" not in rendition:
                continue
            try:
                key = self.grants.verify(rendition["grant"], WRITE).key
            except InvalidGrant:
                continue  # not ours to delete
            if key.startswith(STAGING_PREFIX):
                self.blobs.delete(key)

    def _put_rendition(self, image_id, rendition):
        preset, data = rendition["preset"], rendition["data"]
        if not isinstance(data, bytes) or not data:
            raise BadRequest("rendition {!r} is empty".format(preset))
        meta = dict(rendition["meta"], bytes=len(data), sha256=content_sha256(data))
        key = variant_key(image_id, preset, meta["format"])
        self.blobs.put(key, data, meta["mime_type"], meta["sha256"])
        return meta

    def _register_rendition(self, image_id, rendition, discard):
        preset, meta = rendition["preset"], rendition["meta"]
        if not rendition.get("bytes"):
            raise BadRequest("rendition {!r} is empty".format(preset))
        staged = self._checked_staged_blob(rendition["grant"], rendition["bytes"], rendition["sha256"])
        if discard:
            self.blobs.delete(staged)
            return None
        self.blobs.promote(staged, variant_key(image_id, preset, meta["format"]), meta["mime_type"],
                           rendition["sha256"], rendition["bytes"])
        return dict(meta, bytes=rendition["bytes"], sha256=rendition["sha256"])

    def get_variant(self, image_id, preset, fmt=None, tenant=None):
        """Return ``(bytes, variant record)`` of the preset's ``fmt`` (None: its preferred one)."""
        record = self.get_image(image_id, tenant)
        check_preset_name(preset)
        variant = record["variants"].get(preset)
        if variant is not None and fmt is not None:
            variant = variant["formats"].get(fmt)
        if variant is None:
            raise NotFound("image {} has no rendition {!r}{}".format(
                image_id, preset, " in {}".format(str(fmt)[:20]) if fmt else ""))
        return self.blobs.get(stored_variant_key(image_id, preset, variant)), variant

    # -- erasure ------------------------------------------------------------

    def delete_image(self, image_id, presets=None, announce=None, tenant=None):
        """Erase an image: its original, every rendition, its catalog rows.

        Hidden first (reads answer 404 and a racing job's ``complete`` writes
        nothing from then on), then the blobs -- the recorded renditions and
        those ``presets`` (``{preset: [formats]}``) would have, in case a job
        wrote one it never got to record -- then ``announce(notice)`` (the
        ``image_deleted`` event), then the rows.  A crash or a failed announcement leaves the
        row hidden and marked, and deleting again finishes the job
        (``unfinished_deletions``).  Returns the notice:
        ``{"id", "deleted_at", "callback_url"}``.  With ``tenant``, another
        tenant's image is ``ImageNotFound``, like an unknown one.
        """
        record = self.catalog.mark_deleted(check_image_id(image_id), tenant)
        keys = {original_key(image_id)}
        for preset, variant in record["variants"].items():
            keys.update(stored_variant_key(image_id, preset, meta)
                        for meta in variant["formats"].values())
        for preset, formats in (presets or {}).items():
            keys.update(variant_key(image_id, preset, fmt) for fmt in formats)
        self._delete_blobs(sorted(keys))
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

    def prune_renditions(self, configured, limit=100):
        """Delete up to ``limit`` renditions ``configured`` (``{preset: [formats]}``) no
        longer asks for; return how many.

        Blobs first, then rows: a crash in between leaves rows that the next
        prune finds again, never a blob nothing points to.
        """
        stale = self.catalog.stale_rendition_keys(configured, limit)
        self._delete_blobs([stored_variant_key(image_id, preset, meta)
                            for image_id, preset, meta in stale])
        self.catalog.remove_renditions([(image_id, preset, meta["format"])
                                        for image_id, preset, meta in stale])
        return len(stale)

    # -- housekeeping ---------------------------------------------------------------

    def stalled_image_ids(self, older_than, limit=100):
        return self.catalog.stalled_image_ids(older_than, limit)

    def touch(self, image_id):
        self.catalog.touch(check_image_id(image_id))

    def sweep_staging(self):
        """Delete staged blobs nobody registered within ``staging_max_age``; return how many."""
        stale = self.blobs.stale_keys(STAGING_PREFIX, self.limits.staging_max_age)
        for key in stale:
            self.blobs.delete(key)
        return len(stale)

    def access(self):
        """How others reach the blobs: ``{"kind": "files", "store_id"}`` or ``{"kind": "s3"}``."""
        if self.blobs.kind == "files":
            return {"kind": "files", "store_id": self.catalog.secret("store-id").hex()[:32]}
        return {"kind": self.blobs.kind}

    # -- grants ------------------------------------------------------------------------

    def _grant(self, access, key):
        grant = self.grants.issue(access, key)
        url = self.blobs.presign(key, access, self.grants.ttl)
        if url is not None:
            grant["url"] = url
        return grant

    def _checked_staged_blob(self, token, size, sha256, promoted_to=None):
        """The staging key a write grant names, once what it holds matches the
        declaration; None if it is gone but ``promoted_to`` holds those bytes."""
        key = self.grants.verify(token, WRITE).key
        if not key.startswith(STAGING_PREFIX):
            raise InvalidGrant("a write grant must name a staging key")
        try:
            actual = self.blobs.digest(key)
        except NotFound:
            if promoted_to and self._holds(promoted_to, size, sha256):
                return None
            raise InvalidGrant("nothing was written under this grant") from None
        if actual != (size, sha256):
            self.blobs.delete(key)
            raise InvalidGrant("the blob written under this grant is {} bytes with SHA-256 {}, "
                               "not the declared {} bytes with {}".format(*actual, size, sha256))
        return key

    def _holds(self, key, size, sha256):
        try:
            return self.blobs.digest(key) == (size, sha256)
        except NotFound:
            return False

    # -- webhook deliveries (imagepipe.storage.deliveries) ----------------------

    @property
    def deliveries(self):
        return DeliveryLedger(self.catalog.engine, self.catalog.clock)

    def claim_delivery(self, image_id, url, outcome, attempt, lease_seconds):
        return self.deliveries.claim(check_image_id(image_id), url, outcome, int(attempt),
                                     float(lease_seconds))

    def finish_delivery(self, image_id, url, outcome, attempt, state):
        self.deliveries.finish(check_image_id(image_id), url, outcome, int(attempt), state)
