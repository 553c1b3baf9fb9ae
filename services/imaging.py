"""Imaging: turns ``image_uploaded`` events into stored renditions.

Stateless; run as many processes as there are cores to spare.  All imaging
processes share one durable queue, and a job is acknowledged only after it
has finished, so a job whose process dies is redelivered to another one.
"""
import logging

from nameko.events import EventDispatcher, event_handler

from imagepipe.processing import process_image
from services.dependencies import Config, Renderer, StorageRpc
from services.topology import JOB_EVENT, JOB_SOURCE, PROCESSED_EVENT

log = logging.getLogger(__name__)


class ImagingService:
    name = "imaging"

    config = Config()
    storage = StorageRpc()
    render = Renderer()
    dispatch = EventDispatcher()

    @event_handler(JOB_SOURCE, JOB_EVENT)
    def handle_image_uploaded(self, job):
        outcome = process_image(job, self.storage, self.render, self.config)
        log.info("image %s %s in %.3f s (rendered: %s)", outcome["id"], outcome["status"],
                 outcome["seconds"], ",".join(outcome["rendered"]) or "-")
        if outcome["changed"]:
            self.dispatch(PROCESSED_EVENT, outcome)
