"""Keeping stored renditions in step with the configured presets.

Presets change: a new one is added, one is retuned, one is dropped.
``reprocess_step`` puts jobs for stored images on the job queue, a few at a
time; ``ImageStore.prune_renditions`` deletes renditions of presets that no
longer exist.

Pacing.  Reprocess jobs share the FIFO job queue with new uploads, so a
run that enqueued every stored image at once would put each new upload
behind all of them.  A step enqueues only while the queue holds fewer than
``max_waiting`` ready jobs (read with a passive declare, which costs the
broker nothing), and the caller calls again when there is room.  A new
upload then waits behind at most ``max_waiting`` reprocess jobs -- plus
those imaging processes have already taken (their prefetch) -- while
imaging is never left idle as long as the caller refills faster than
``max_waiting`` jobs take.  RabbitMQ's priority queues would be the other
way; they cannot be enabled on a live queue (its arguments are fixed), and
quorum queues have no priorities before RabbitMQ 3.12.
"""
from imagepipe.errors import BadRequest

DEFAULT_MAX_WAITING = 8
DEFAULT_BATCH = 100


def reprocess_job(image_id, presets=None):
    """A job that renders ``presets`` of a stored image again (all of them if None)."""
    job = {"id": image_id, "reprocess": True}
    if presets is not None:
        job["presets"] = list(presets)
    return job


def reprocess_step(catalog, configured, queue, cursor=None, every=False,
                   max_waiting=DEFAULT_MAX_WAITING, limit=DEFAULT_BATCH):
    """Enqueue the next jobs of a reprocess run, as many as the job queue has room for.

    ``configured``: ``{preset: [formats]}``.  ``queue`` has ``waiting()``
    (ready jobs in the job queue) and ``redispatch(job)``.  Images are taken
    in id order after ``cursor``: done images that lack a configured
    rendition -- a preset, or a format of one -- (a job renders those
    presets), or with ``every`` every done image (a job renders every preset
    again).

    Returns ``{"enqueued", "cursor", "finished", "waiting"}``.  Call again
    with the returned ``cursor`` until ``finished``; an answer that enqueued
    nothing and is not finished means the queue is full: wait a moment.
    """
    max_waiting, limit = _at_least_one(max_waiting, "max_waiting"), _at_least_one(limit, "limit")
    waiting = queue.waiting()
    room = min(limit, max_waiting - waiting)
    if room <= 0:
        return {"enqueued": 0, "cursor": cursor, "finished": False, "waiting": waiting}
    gaps = catalog.rendition_gaps(configured, cursor, room, every)
    for image_id, missing in gaps:
        queue.redispatch(reprocess_job(image_id, None if every else missing))
    return {
        "enqueued": len(gaps),
        "cursor": gaps[-1][0] if gaps else cursor,
        "finished": len(gaps) < room,
        "waiting": waiting + len(gaps),
    }


def _at_least_one(value, name):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise BadRequest("{} must be a whole number of at least 1, not {!r}".format(name, value))
    return number
