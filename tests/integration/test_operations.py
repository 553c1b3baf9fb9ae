"""Operating the pipeline: nameko shell, retries, dead letters, lost jobs."""
import os
import subprocess
from pathlib import Path

import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter
from nameko.testing.utils import get_container
from prometheus_client import REGISTRY

from harness.processes import NAMEKO
from services.gateway import GatewayService
from services.imaging import ImagingService
from services.storage import StorageService
from tests.helpers import REPO_ROOT, make_jpeg, upload, wait_for_status, wait_for_writes

# every operation works the same on classic and quorum job queues (own vhost each)
pytestmark = pytest.mark.parametrize("job_queue_type", ["classic", "quorum"])
JOB_HANDLER = "handle_image_uploaded"


def storage_record(config, image_id):
    with ClusterRpcProxy(config, timeout=10) as rpc:
        return rpc.storage.get_image(image_id)


def jobs_handled(count, image_ids=None):
    """An entrypoint_waiter callback: done once ``count`` jobs (for these ids) are through."""
    handled = []

    def callback(worker_ctx, result, exc_info):
        job = worker_ctx.args[0]
        if image_ids is None or job.get("id") in image_ids:
            handled.append(job)
        return len(handled) >= count

    callback.handled = handled
    return callback


def test_nameko_shell_calls_storage_and_redispatches(pipeline, web, pipeline_config):
    image_id = upload(web, make_jpeg(600, 400))
    assert wait_for_status(web, image_id)["status"] == "done"
    assert storage_record(pipeline_config, image_id)["variants"]["thumb"]["writes"] == 1

    script = (
        'print("STATUS", n.rpc.storage.get_image("{0}")["status"])\n'
        'n.dispatch_event("gateway", "image_uploaded", {{"id": "{0}", "reprocess": True}})\n'
    ).format(image_id)
    env = dict(os.environ, AMQP_URI=pipeline_config["AMQP_URI"])
    shell = subprocess.run(
        [NAMEKO, "shell", "--config", "config.yaml"], input=script, cwd=REPO_ROOT,
        env=env, capture_output=True, text=True, timeout=60)
    assert "STATUS done" in shell.stdout, shell.stdout + shell.stderr

    # the re-dispatched job renders every preset again; the status stays done
    wait_for_writes(pipeline_config, image_id, {"thumb": 2, "medium": 2})
    assert web.get("/images/" + image_id).json()["status"] == "done"


def test_duplicate_event_writes_nothing_twice(pipeline, web, pipeline_config):
    from nameko.standalone.events import event_dispatcher

    imaging = get_container(pipeline, ImagingService)
    with entrypoint_waiter(imaging, JOB_HANDLER, timeout=30):  # the upload's own job, all through
        image_id = upload(web, make_jpeg(500, 500, color=(5, 200, 5)))
    done = wait_for_status(web, image_id)
    dispatch = event_dispatcher(pipeline_config)
    unknown = "0" * 32
    # wait until imaging has handled all four jobs, however late a duplicate comes
    every_job = jobs_handled(4, {image_id, unknown})
    with entrypoint_waiter(imaging, JOB_HANDLER, callback=every_job, timeout=30):
        for _ in range(3):
            dispatch("gateway", "image_uploaded", {"id": image_id})
        dispatch("gateway", "image_uploaded", {"id": unknown})  # unknown: dead-lettered
    assert sorted(job["id"] for job in every_job.handled) == sorted([image_id] * 3 + [unknown])
    with ClusterRpcProxy(pipeline_config, timeout=10) as rpc:
        assert [letter["job"]["id"] for letter in rpc.imaging.dead_letters()] == [unknown]
        record = rpc.storage.get_image(image_id)
    assert [variant["writes"] for variant in record["variants"].values()] == [1, 1]
    assert record["status"] == "done" and record["updated_at"] == done["updated_at"]


def test_transient_storage_outage_is_retried_not_dropped(runner_factory, pipeline_config, web):
    pipeline_config["RPC_TIMEOUT"] = 1
    pipeline_config["JOB_RETRY_DELAYS"] = "1,2,4"
    front = runner_factory(pipeline_config, GatewayService)
    storage = runner_factory(pipeline_config, StorageService)
    front.start()
    storage.start()
    image_id = upload(web, make_jpeg(300, 200))
    storage.stop()  # storage is gone; its queue stays

    retries_before = REGISTRY.get_sample_value("imagepipe_job_retries_total") or 0.0
    imaging = runner_factory(pipeline_config, ImagingService)
    with entrypoint_waiter(get_container(imaging, ImagingService), JOB_HANDLER, timeout=30) as first:
        imaging.start()
    # the first attempt's storage call timed out: the job went to a retry queue
    assert first.worker_ctx.args[0] == {"id": image_id}  # attempt 1 (retries carry "attempt")
    assert REGISTRY.get_sample_value("imagepipe_job_retries_total") - retries_before == 1

    finished = jobs_handled(1)
    with entrypoint_waiter(get_container(imaging, ImagingService), JOB_HANDLER,
                           callback=finished, timeout=30):
        storage = runner_factory(pipeline_config, StorageService)
        storage.start()
    status = wait_for_status(web, image_id, timeout=20)
    assert status["status"] == "done", status
    # what finished it was a retry of the job, not a second delivery of the first one
    assert finished.handled[0]["attempt"] >= 1, finished.handled


def test_dead_letters_can_be_listed_and_replayed(runner_factory, pipeline_config, web):
    services = runner_factory(pipeline_config, GatewayService, StorageService)
    services.start()
    data = make_jpeg(320, 240, color=(40, 40, 200))
    image_id = upload(web, data)
    # the original's blob vanishes (say, a disk was swapped) before imaging runs
    blob = next(Path(pipeline_config["STORAGE_ROOT"], "originals").rglob(image_id))
    blob_bytes = blob.read_bytes()
    blob.unlink()

    imaging = runner_factory(pipeline_config, ImagingService)
    imaging.start()
    failed = wait_for_status(web, image_id)
    assert failed["status"] == "failed"
    assert "missing" in failed["error"]

    with ClusterRpcProxy(pipeline_config, timeout=10) as rpc:
        letters = rpc.imaging.dead_letters()
        assert [letter["job"]["id"] for letter in letters] == [image_id]
        assert "missing" in letters[0]["error"]
        assert rpc.imaging.dead_letters() == letters  # listing does not consume

        blob.write_bytes(blob_bytes)  # the operator fixes the cause, then replays
        assert rpc.imaging.replay_dead_letters() == [image_id]
        assert rpc.imaging.dead_letters() == []
    assert wait_for_status(web, image_id)["status"] == "done"


def test_lost_job_is_healed_by_the_storage_sweeper(runner_factory, pipeline_config, web):
    pipeline_config["STALLED_AFTER"] = 0.5
    pipeline_config["SWEEP_INTERVAL"] = 0.5
    front = runner_factory(pipeline_config, GatewayService, StorageService, ImagingService)
    front.start()
    with ClusterRpcProxy(pipeline_config, timeout=10) as rpc:
        # stored, but its event never sent (as if the gateway died in between)
        record, _ = rpc.storage.put_original(make_jpeg(200, 100), {
            "format": "JPEG", "mime_type": "image/jpeg", "width": 200, "height": 100, "frames": 1})
    assert wait_for_status(web, record["id"], timeout=15)["status"] == "done"
