"""What an image record says besides its fields: status values and timestamps.

Status only moves forward -- pending -> processing -> done | failed -- (see
``imagepipe.storage.catalog``); every part that reads a status uses these names.
"""
from datetime import datetime, timezone

PENDING, PROCESSING, DONE, FAILED = "pending", "processing", "done", "failed"
STATUSES = (PENDING, PROCESSING, DONE, FAILED)
UNFINISHED = (PENDING, PROCESSING)
FINISHED = (DONE, FAILED)
# The catalog's own state while an image is being erased (blobs first, then
# rows): never shown, the image answers 404 from the moment it is deleted.
DELETED = "deleted"


def isoformat(epoch):
    """Seconds since the epoch as ISO 8601 in UTC, to the millisecond (None stays None)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def job_outcome(record):
    """What an imaging job acts on once its image is finished: the rest of the record stays home."""
    return {key: record.get(key) for key in ("id", "status", "error", "callback_url")}
