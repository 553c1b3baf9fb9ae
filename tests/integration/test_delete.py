"""``DELETE /images/<id>`` end to end, on every blob store and catalog.

Real services over real RabbitMQ (own vhost), real HTTP; blobs in files or a
real S3 server (SeaweedFS), the catalog in SQLite or PostgreSQL (the
``backend`` fixture of test_blob_backends).  Every test looks inside the
backends themselves -- the files under STORAGE_ROOT, the bucket's listing,
the catalog's tables -- for anything the image left.

The race with a running job is made deterministic: ``GatedImaging`` renders,
then waits on an event the test sets only after the DELETE has been
answered, so the job's ``complete`` always comes after the delete.
"""
import eventlet
import pytest
from eventlet.event import Event

from services import topology
from services.extensions.events import queue_handler
from services.extensions.providers import Renderer
from services.gateway import GatewayService
from services.imaging import ImagingService
from services.storage import StorageService
from tests.helpers import make_jpeg, make_png, wait_for_status
from tests.integration.test_blob_backends import backend, pipeline_config  # noqa: F401 (fixtures)


class Gate:
    """Where the gated imaging service stops, and what the test tells it."""

    def __init__(self, hold=True):
        self.rendered, self.proceed, self.finished = Event(), Event(), Event()
        if not hold:
            self.proceed.send()


GATE = Gate()


class GatedRenderer(Renderer):
    def get_dependency(self, worker_ctx):
        render = super().get_dependency(worker_ctx)

        def render_then_wait(data, presets):
            renditions = render(data, presets)
            GATE.rendered.send()
            GATE.proceed.wait()
            return renditions

        return render_then_wait


class GatedImaging(ImagingService):
    """imaging whose job waits between rendering and storing, and says when it is over."""

    render = GatedRenderer()

    @queue_handler(topology.JOB_QUEUE)
    def handle_image_uploaded(self, job):
        try:
            super().handle_image_uploaded(job)
        finally:
            GATE.finished.send(job["id"])


@pytest.fixture
def gate():
    global GATE
    GATE = Gate()
    yield GATE
    if not GATE.proceed.ready():
        GATE.proceed.send()  # never leave a job hanging in the runner


def start(runner_factory, config, *services):
    runner = runner_factory(config, *services)
    runner.start()
    return runner


def upload(web, data):
    response = web.post("/upload", files={"image": ("photo", data)})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def assert_nothing_left(backend, image_id, web):
    for path in ("", "/original", "/thumb", "/medium", "/events"):
        response = web.get("/images/{}{}".format(image_id, path))
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] == "not_found"
    assert [key for key in backend.blob_keys() if image_id in key] == []
    # not even an empty folder named after it (the id is the content's hash)
    assert [path for path in backend.storage_root.rglob("*") if image_id in str(path)] == []
    rows = backend.catalog_rows()
    assert image_id not in rows["images"]
    assert [row for row in rows["variants"] if row.startswith(image_id)] == []
    assert image_id not in [image["id"] for image in web.get("/images").json()["images"]]


def dead_letters(runner):
    from services.extensions.retries import peek_dead_letters

    return peek_dead_letters(runner.config)


def test_delete_erases_the_image_everywhere_and_a_reupload_starts_afresh(backend, pipeline, web):
    data, other = make_jpeg(900, 600, color=(10, 200, 40)), make_png(120, 80)
    image_id, kept = upload(web, data), upload(web, other)
    first = wait_for_status(web, image_id)
    kept_status = wait_for_status(web, kept)
    assert first["status"] == "done" and set(first["variants"]) == {"thumb", "medium"}

    response = web.delete("/images/" + image_id)
    assert response.status_code == 204 and response.content == b""
    assert_nothing_left(backend, image_id, web)
    # the other image is untouched
    shard = kept[:2]
    assert backend.blob_keys() == sorted(
        ["originals/{}/{}".format(shard, kept)]
        + ["variants/{}/{}/{}.{}".format(shard, kept, preset, fmt)
           for preset, variant in kept_status["variants"].items() for fmt in variant["formats"]])
    assert backend.catalog_rows()["images"] == [kept]
    if backend.uses_s3:
        # with S3 nothing of it was ever under STORAGE_ROOT (at most the SQLite catalog)
        assert [name for name in backend.local_files() if not name.startswith("catalog.sqlite3")] == []

    # deleting again: the image is unknown now, like any id that never existed
    again = web.delete("/images/" + image_id)
    assert again.status_code == 404 and again.json()["error"] == "not_found"

    # the same bytes again: a new image with the same id, processed afresh
    assert upload(web, data) == image_id
    fresh = wait_for_status(web, image_id)
    assert fresh["status"] == "done" and fresh["attempts"] == 1
    assert fresh["created_at"] > first["created_at"]
    assert web.get(fresh["original"]["url"]).content == data
    assert {name: variant["bytes"] for name, variant in fresh["variants"].items()} == {
        name: variant["bytes"] for name, variant in first["variants"].items()}


def test_a_delete_racing_a_running_job_wins(backend, runner_factory, pipeline_config, web, gate):
    runner = start(runner_factory, pipeline_config, GatewayService, GatedImaging, StorageService)
    image_id = upload(web, make_jpeg(1200, 900, color=(200, 100, 0)))
    with eventlet.Timeout(60):
        gate.rendered.wait()  # the job has the renditions in hand and has not stored them
    assert web.get("/images/" + image_id).json()["status"] == "processing"

    assert web.delete("/images/" + image_id).status_code == 204
    gate.proceed.send()  # now the job tries to store its renditions and finish the image
    with eventlet.Timeout(60):
        assert gate.finished.wait() == image_id

    assert_nothing_left(backend, image_id, web)
    assert backend.blob_keys() == [] and backend.catalog_rows() == {"images": [], "variants": []}
    assert dead_letters(runner) == []  # dropped, not parked for a replay


def test_a_queued_job_of_a_deleted_image_brings_nothing_back(backend, runner_factory,
                                                            pipeline_config, web, gate):
    runner = start(runner_factory, pipeline_config, GatewayService, StorageService)
    image_id = upload(web, make_jpeg(300, 200, color=(1, 2, 3)))  # no imaging yet: its job waits
    assert web.delete("/images/" + image_id).status_code == 204

    gate.proceed.send()
    start(runner_factory, pipeline_config, GatedImaging)
    with eventlet.Timeout(60):
        assert gate.finished.wait() == image_id
    assert not gate.rendered.ready()  # nothing was even rendered
    assert backend.blob_keys() == [] and backend.catalog_rows() == {"images": [], "variants": []}
    assert dead_letters(runner) == []
