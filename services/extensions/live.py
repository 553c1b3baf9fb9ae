"""The gateway's live status streams (``GET /images/<id>/events``).

``LiveStatus`` owns this process's ``imagepipe.web.live.StatusWatchers``.
The gateway's broadcast ``image_processed`` and ``image_deleted`` handlers
wake the watchers; each stream is a generator that werkzeug iterates *after*
the HTTP worker has returned its Response, so an open stream holds no worker
slot.  A stream re-reads status through the storage proxy of the worker
that opened it: its replies come through the container's reply listener,
which lives as long as the container, not the worker.
"""
import logging

from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Response

from imagepipe.settings import Settings
from imagepipe.web import api
from imagepipe.web.live import StatusStream, StatusWatchers
from imagepipe.web.signedurls import signer_for

log = logging.getLogger(__name__)

# How long stop() lets woken streams write their last bytes before the
# container kills the connection greenlets.
DRAIN_SECONDS = 1.0
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx & co.: pass each event through at once
    "X-Content-Type-Options": "nosniff",
}


class LiveStatus(DependencyProvider):
    """The live streams of one gateway process."""

    def setup(self):
        settings = Settings.from_config(self.container.config)
        self.public_url = settings.public_url
        self.signer = signer_for(settings)
        self.recheck_interval = settings.live_recheck_interval
        self.max_seconds = settings.live_max_seconds
        self.watchers = StatusWatchers()

    def get_dependency(self, worker_ctx):
        return self

    def stop(self):
        self._close()

    def kill(self):
        self._close()

    def _close(self):
        self.watchers.close()
        if not self.watchers.wait_until_empty(DRAIN_SECONDS):
            log.warning("%d status streams still open at shutdown", len(self.watchers))

    def notify(self, image_id):
        return self.watchers.notify(image_id)

    def open_stream(self, request, image_id, read_record):
        """The ``text/event-stream`` response for ``image_id``.

        The watch is registered before ``read_record()`` reads the first
        status, so a change between that read and the first wait still wakes
        the stream.  ``read_record`` raising (unknown id: 404) answers
        before anything is streamed.
        """
        def read_status():
            return api.image_status(read_record(), self.public_url, self.signer)

        watch = self.watchers.watch(image_id)
        try:
            first_status = read_status()
        except BaseException:
            watch.close()
            raise
        body = StatusStream(watch, first_status, read_status,
                            self.recheck_interval, self.max_seconds)
        # eventlet's server gathers 4 KiB before it writes; events are smaller
        request.environ["eventlet.minimum_write_chunk_size"] = 0
        return Response(body, mimetype="text/event-stream", headers=STREAM_HEADERS)
