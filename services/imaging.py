"""Imaging: turns ``image_uploaded`` events into stored renditions.

Stateless; run as many processes as there are cores to spare.  All imaging
processes share one durable job queue, and a job is acknowledged only after
it has finished, so a job whose process dies is redelivered to another one.
A job that fails for a reason other than its image being bad is retried with
back-off, then dead-lettered (see ``dead_letters`` / ``replay_dead_letters``).
"""
import logging

from nameko.events import EventDispatcher

from imagepipe.errors import PERMANENT_JOB_ERRORS, PipelineError, Unavailable
from imagepipe.records import FAILED
from imagepipe.rendering.job import process_image
from services import topology
from services.extensions.events import queue_handler
from services.extensions.observability import LogContext, Metrics
from services.extensions.providers import BlobAccess, Config, Renderer
from services.extensions.retries import JobQueue
from services.extensions.rpc import StorageRpc, rpc

log = logging.getLogger(__name__)


class ImagingService:
    name = "imaging"

    config = Config()
    storage = StorageRpc()
    blobs = BlobAccess()
    render = Renderer()
    jobs = JobQueue()
    dispatch = EventDispatcher()
    metrics = Metrics()
    log_context = LogContext()

    @queue_handler(topology.JOB_QUEUE)
    def handle_image_uploaded(self, job):
        try:
            outcome = process_image(job, self.storage, self.render, self.config,
                                    self.blobs.direct_for(self.storage))
        except Exception as exc:
            self._retry_or_give_up(job, exc)
            return
        self.metrics.job_finished(outcome)
        log.info("image %s %s in %.3f s (rendered: %s)", outcome["id"], outcome["status"],
                 outcome["seconds"], describe_renders(outcome))
        if outcome["changed"]:
            self.dispatch(topology.PROCESSED_EVENT, outcome)

    @rpc
    def ping(self):
        return "pong"

    @rpc
    def dead_letters(self, limit=100):
        return self.jobs.dead_letters(limit)

    @rpc
    def replay_dead_letters(self, limit=100, image_id=None):
        return self.jobs.replay(limit, image_id)

    def _retry_or_give_up(self, job, exc):
        reason = describe_error(exc)
        final = isinstance(exc, PERMANENT_JOB_ERRORS)
        self.metrics.job_attempt_failed(permanent=final)
        log.warning("image %s attempt %s failed: %s", job.get("id"), int(job.get("attempt") or 0) + 1,
                    reason, exc_info=not isinstance(exc, PipelineError))
        if self.jobs.retry(job, reason, final=final):
            self.metrics.job_retried()
            return
        self.metrics.job_dead_lettered()
        log.error("image %s dead-lettered: %s", job.get("id"), reason)
        try:
            outcome = self.storage.finish(job["id"], FAILED, "processing failed: " + reason)
        except (Unavailable, *PERMANENT_JOB_ERRORS, KeyError):
            return  # the storage sweeper re-dispatches it once storage is back
        self.metrics.job_given_up()
        self.dispatch(topology.PROCESSED_EVENT, {
            "id": outcome["id"], "status": outcome["status"], "error": outcome["error"],
            "has_callback": bool(outcome.get("callback_url"))})


def describe_renders(outcome):
    """``thumb 0.012 s, medium 0.048 s`` -- each preset's time in the render worker."""
    seconds = outcome.get("render_seconds") or {}
    return ", ".join("{} {:.3f} s".format(preset, seconds[preset]) if preset in seconds else preset
                     for preset in outcome["rendered"]) or "-"


def describe_error(exc):
    if isinstance(exc, PipelineError):
        return exc.message
    return "{}: {}".format(type(exc).__name__, exc)[:500]
