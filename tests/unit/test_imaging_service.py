"""ImagingService with its dependencies swapped by nameko's worker_factory."""
import hashlib
from unittest.mock import call

import pytest
from nameko.testing.services import worker_factory

from imagepipe.errors import InvalidImage, NotFound, Unavailable
from imagepipe.rendering.presets import Preset
from imagepipe.rendering.render import Rendition
from imagepipe.settings import Settings
from services.imaging import ImagingService

IMAGE_ID = "a" * 32
SETTINGS = Settings(presets=(Preset("thumb", 256, 256),))


def record(status="processing", attempts=1, variants=None):
    return {"id": IMAGE_ID, "status": status, "attempts": attempts, "error": None,
            "variants": variants or {}}


def claimed(record, original=b"original"):
    return {"record": record, "original": original}


@pytest.fixture
def service():
    service = worker_factory(ImagingService, config=SETTINGS)
    service.storage.claim.return_value = claimed(record())
    service.storage.finish.side_effect = lambda image_id, status, error=None: dict(
        record(status), error=error)
    service.storage.complete.side_effect = lambda image_id, renditions, replace=False: record("done")
    service.render.return_value = [Rendition("thumb", b"webp", "webp", "image/webp", 10, 5,
                                             placeholder="AAAA", color="#102030")]
    service.blobs.direct_for.return_value = None  # bytes over RPC; see the claim-check test
    return service


class StagingBlobs:
    """DirectBlobs' interface, over a dict: what imaging read and wrote under which grant."""

    def __init__(self, blobs):
        self.blobs = blobs

    def read(self, grant):
        return self.blobs[grant["key"]]

    def write(self, grant, source):
        data = source.read()
        self.blobs[grant["key"]] = data
        return len(data), hashlib.sha256(data).hexdigest()


def test_claim_check_job_reads_and_writes_blobs_under_grants(service):
    blobs = StagingBlobs({"originals/aa/" + IMAGE_ID: b"original"})
    service.blobs.direct_for.return_value = blobs
    service.storage.claim.return_value = {
        "record": record(),
        "original": {"access": "read", "key": "originals/aa/" + IMAGE_ID, "token": "r"},
        "renditions": [{"access": "write", "key": "staging/" + "1" * 32, "token": "w"}]}
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.storage.claim.assert_called_once_with(IMAGE_ID, False, 1)  # one grant: one preset, one format
    service.render.assert_called_once_with(b"original", list(SETTINGS.presets))
    assert blobs.blobs["staging/" + "1" * 32] == b"webp"
    service.storage.complete.assert_called_once_with(IMAGE_ID, [{
        "preset": "thumb", "grant": "w", "bytes": 4, "sha256": hashlib.sha256(b"webp").hexdigest(),
        "meta": {"format": "webp", "mime_type": "image/webp", "width": 10, "height": 5, "rank": 0,
                 "placeholder": "AAAA", "color": "#102030", "focus": None, "frames": 1}}], False)


def test_job_renders_stores_and_announces(service):
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.storage.claim.assert_called_once_with(IMAGE_ID, False)
    service.render.assert_called_once_with(b"original", list(SETTINGS.presets))
    service.storage.complete.assert_called_once_with(IMAGE_ID, [{
        "preset": "thumb", "data": b"webp",
        "meta": {"format": "webp", "mime_type": "image/webp", "width": 10, "height": 5,
                 "rank": 0, "placeholder": "AAAA", "color": "#102030", "focus": None,
                 "frames": 1}}], False)
    service.storage.finish.assert_not_called()
    event_type, outcome = service.dispatch.call_args.args
    assert event_type == "image_processed"
    assert (outcome["id"], outcome["status"]) == (IMAGE_ID, "done")
    service.jobs.retry.assert_not_called()


def test_finished_image_is_not_rendered_again(service):
    service.storage.claim.return_value = claimed(record(status="done"), original=None)
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.render.assert_not_called()
    service.storage.complete.assert_not_called()
    service.dispatch.assert_not_called()


def test_existing_renditions_are_skipped(service):
    service.storage.claim.return_value = claimed(record(variants={"thumb": {"formats": {"webp": {}}}}))
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.render.assert_not_called()
    service.storage.complete.assert_called_once_with(IMAGE_ID, [], False)


def test_a_missing_format_renders_the_preset_again_and_focus_goes_to_render(service):
    service.config = Settings(presets=(Preset("thumb", 256, 256, more_formats=("avif",)),))
    service.storage.claim.return_value = claimed(dict(
        record(variants={"thumb": {"formats": {"webp": {}}}}), focus=[0.2, 0.7]))
    service.render.return_value = [
        Rendition("thumb", b"webp", "webp", "image/webp", 10, 5),
        Rendition("thumb", b"avif", "avif", "image/avif", 10, 5, seconds=0.25)]
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.render.assert_called_once_with(b"original", list(service.config.presets), focus=(0.2, 0.7))
    stored = service.storage.complete.call_args.args[1]
    assert [(item["meta"]["format"], item["meta"]["rank"]) for item in stored] == [
        ("webp", 0), ("avif", 1)]
    assert service.dispatch.call_args.args[1]["render_seconds"] == {"thumb": 0.25}


def test_bad_image_fails_at_once_without_retry(service):
    service.render.side_effect = InvalidImage("image data is corrupt")
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.storage.finish.assert_called_once_with(IMAGE_ID, "failed", "image data is corrupt")
    service.storage.complete.assert_not_called()
    service.jobs.retry.assert_not_called()
    assert service.dispatch.call_args.args[1]["status"] == "failed"


def test_transient_error_is_retried(service):
    service.storage.complete.side_effect = Unavailable("storage did not answer")
    service.jobs.retry.return_value = True
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.jobs.retry.assert_called_once_with(
        {"id": IMAGE_ID}, "storage did not answer", final=False)
    service.storage.finish.assert_not_called()
    service.dispatch.assert_not_called()


def test_exhausted_retries_mark_the_image_failed(service):
    service.render.side_effect = RuntimeError("boom")
    service.jobs.retry.return_value = False
    service.handle_image_uploaded({"id": IMAGE_ID, "attempt": 3})
    assert service.storage.finish.call_args == call(
        IMAGE_ID, "failed", "processing failed: RuntimeError: boom")
    assert service.dispatch.call_args.args[1]["status"] == "failed"


def test_job_for_unknown_image_is_dead_lettered_at_once(service):
    service.storage.claim.side_effect = NotFound("no image")
    service.jobs.retry.return_value = False
    service.storage.finish.side_effect = NotFound("no image")
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.jobs.retry.assert_called_once_with({"id": IMAGE_ID}, "no image", final=True)
    service.dispatch.assert_not_called()


def test_crash_looping_job_gives_up(service):
    service.storage.claim.return_value = claimed(record(attempts=SETTINGS.job_max_attempts + 1))
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.render.assert_not_called()
    status, reason = service.storage.finish.call_args.args[1:]
    assert status == "failed" and "gave up" in reason


# -- metrics: what each path records -------------------------------------------

def test_metrics_of_a_finished_job(service):
    service.render.return_value = [
        Rendition("thumb", b"webp", "webp", "image/webp", 10, 5, seconds=0.0123)]
    service.handle_image_uploaded({"id": IMAGE_ID})
    outcome = service.metrics.job_finished.call_args.args[0]
    assert outcome["status"] == "done" and outcome["changed"] is True
    assert outcome["render_seconds"] == {"thumb": 0.0123}
    service.metrics.job_attempt_failed.assert_not_called()


def test_metrics_of_a_retry(service):
    service.storage.claim.side_effect = Unavailable("storage did not answer")
    service.jobs.retry.return_value = True
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.metrics.job_attempt_failed.assert_called_once_with(permanent=False)
    service.metrics.job_retried.assert_called_once_with()
    service.metrics.job_dead_lettered.assert_not_called()
    service.metrics.job_finished.assert_not_called()


def test_metrics_of_a_dead_letter(service):
    service.render.side_effect = RuntimeError("boom")
    service.jobs.retry.return_value = False
    service.handle_image_uploaded({"id": IMAGE_ID, "attempt": 3})
    service.metrics.job_attempt_failed.assert_called_once_with(permanent=False)
    service.metrics.job_retried.assert_not_called()
    service.metrics.job_dead_lettered.assert_called_once_with()
    service.metrics.job_given_up.assert_called_once_with()  # the image is marked failed


def test_metrics_of_a_job_for_an_unknown_image(service):
    service.storage.claim.side_effect = NotFound("no image")
    service.jobs.retry.return_value = False
    service.storage.finish.side_effect = NotFound("no image")
    service.handle_image_uploaded({"id": IMAGE_ID})
    service.metrics.job_attempt_failed.assert_called_once_with(permanent=True)
    service.metrics.job_dead_lettered.assert_called_once_with()
    service.metrics.job_given_up.assert_not_called()  # no image was marked failed
