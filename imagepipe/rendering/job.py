"""One imaging job: original in, every configured rendition out.

``process_image`` talks to storage through whatever object it is given (the
imaging service passes its RPC proxy; unit tests pass an ``ImageStore``), and
renders through the ``render`` callable (the service's pool of render
processes).  Two storage round trips per job: ``claim`` (the record, and
access to the original) and ``complete`` (every rendition, then done).  With
``blobs`` (``imagepipe.storage.direct.DirectBlobs``) the original is read and
the renditions written in the blob store under storage's grants; without,
the bytes travel in those two calls.

Failure classes:
- the image itself is bad (corrupt, too many pixels, ...): permanent, the
  image is marked ``failed`` at once with the reason;
- anything else (storage unreachable, timeouts, bugs) propagates to the
  caller, which retries with back-off and dead-letters after a limit;
- a job that keeps killing its worker is caught by the attempt count kept in
  storage, which survives the crashes that message headers do not.
"""
import io
import time

from imagepipe.errors import PERMANENT_IMAGE_ERRORS
from imagepipe.ids import check_image_id
from imagepipe.records import FAILED, FINISHED


def process_image(job, storage, render, settings, blobs=None):
    """Process one ``image_uploaded`` job; return an outcome dict.

    ``outcome["changed"]`` says whether this call finished the image (as
    opposed to finding it already finished), so the caller announces each
    completion once.
    """
    started = time.monotonic()
    image_id = check_image_id(job.get("id"))
    # an operator's request: render every preset again, and retry a failed image
    reprocess = bool(job.get("reprocess"))

    if blobs is None:
        claimed = storage.claim(image_id, reprocess)
    else:
        claimed = storage.claim(image_id, reprocess, [preset.name for preset in settings.presets])
    record = claimed["record"]
    if record["status"] in FINISHED and not reprocess:
        return _outcome(record, changed=False, started=started)
    was_unfinished = record["status"] not in FINISHED

    if record["attempts"] > settings.job_max_attempts:
        record = storage.finish(image_id, FAILED, (
            "gave up after {} attempts: processing kept crashing or timing out"
            .format(record["attempts"] - 1)))
        return _outcome(record, changed=True, started=started)

    wanted = [
        preset for preset in settings.presets
        if reprocess or preset.name not in record["variants"]
    ]
    render_seconds = {}
    stored = []
    if wanted:
        original = claimed["original"] if blobs is None else blobs.read(claimed["original"])
        try:
            renditions = render(original, wanted)
        except PERMANENT_IMAGE_ERRORS as exc:
            record = storage.finish(image_id, FAILED, exc.message)
            return _outcome(record, changed=True, started=started)
        for rendition in renditions:
            render_seconds[rendition.preset] = round(rendition.seconds, 4)
            stored.append(_stored_rendition(rendition, blobs, claimed))

    record = storage.complete(image_id, stored, reprocess)
    return _outcome(record, changed=was_unfinished or reprocess, started=started,
                    rendered=[preset.name for preset in wanted], render_seconds=render_seconds)


def _stored_rendition(rendition, blobs, claimed):
    """What ``complete`` needs of one rendition: its bytes, or where they were written."""
    stored = {"preset": rendition.preset, "meta": {
        "format": rendition.format,
        "mime_type": rendition.mime_type,
        "width": rendition.width,
        "height": rendition.height,
    }}
    if blobs is None:
        stored["data"] = rendition.data
        return stored
    grant = claimed["renditions"][rendition.preset]
    stored["bytes"], stored["sha256"] = blobs.write(grant, io.BytesIO(rendition.data))
    stored["grant"] = grant["token"]
    return stored


def _outcome(record, changed, started, rendered=(), render_seconds=None):
    return {
        "id": record["id"],
        "status": record["status"],
        "error": record["error"],
        "changed": changed,
        # lets the webhook handler skip images without a callback_url unasked
        "has_callback": bool(record.get("callback_url")),
        "rendered": list(rendered),
        # per preset, measured in the render worker (the shared decode excluded)
        "render_seconds": dict(render_seconds or {}),
        "seconds": round(time.monotonic() - started, 3),
    }
