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
    else:  # a write grant for every rendition the job may make
        claimed = storage.claim(image_id, reprocess,
                                sum(len(preset.formats) for preset in settings.presets))
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
        if reprocess or _missing_formats(preset, record["variants"])
    ]
    render_seconds = {}
    stored = []
    if wanted:
        original = claimed["original"] if blobs is None else blobs.read(claimed["original"])
        try:
            renditions = render(original, wanted, **render_options(record))
        except PERMANENT_IMAGE_ERRORS as exc:
            record = storage.finish(image_id, FAILED, exc.message)
            return _outcome(record, changed=True, started=started)
        ranks = {preset.name: preset.formats for preset in wanted}
        grants = iter(claimed.get("renditions") or ())
        for rendition in renditions:
            render_seconds[rendition.preset] = round(
                render_seconds.get(rendition.preset, 0) + rendition.seconds, 4)
            stored.append(_stored_rendition(rendition, ranks[rendition.preset], blobs,
                                            next(grants, None)))

    record = storage.complete(image_id, stored, reprocess)
    return _outcome(record, changed=was_unfinished or reprocess, started=started,
                    rendered=[preset.name for preset in wanted], render_seconds=render_seconds)


def _stored_rendition(rendition, formats, blobs, grant):
    """What ``complete`` needs of one rendition: its meta, and its bytes or where they were written."""
    stored = {"preset": rendition.preset, "meta": {
        "format": rendition.format,
        "mime_type": rendition.mime_type,
        "width": rendition.width,
        "height": rendition.height,
        **rendition_extras(rendition, formats),
    }}
    if blobs is None:
        stored["data"] = rendition.data
        return stored
    stored["bytes"], stored["sha256"] = blobs.write(grant, io.BytesIO(rendition.data))
    stored["grant"] = grant["token"]
    return stored


def _missing_formats(preset, variants):
    stored = variants.get(preset.name, {}).get("formats", {})
    return [fmt for fmt in preset.formats if fmt not in stored]


def render_options(record):
    """What the render worker needs from the record besides the bytes: the upload's focal point."""
    return {"focus": tuple(record["focus"])} if record.get("focus") else {}


def rendition_extras(rendition, formats):
    """Catalog fields of a rendition beyond its size and type."""
    return {
        # an animated JPEG preset's WebP takes the JPEG's place
        "rank": formats.index(rendition.format) if rendition.format in formats else 0,
        "placeholder": rendition.placeholder,
        "color": rendition.color,
        "focus": list(rendition.focus) if rendition.focus else None,
        "frames": rendition.frames,
    }


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
