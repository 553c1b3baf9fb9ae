"""Operating the pipeline: nameko shell, retries, dead letters, lost jobs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.gateway import GatewayService
from services.imaging import ImagingService
from services.storage import StorageService
from tests.helpers import REPO_ROOT, make_jpeg, wait_for_status

# every operation works the same on classic and quorum job queues (own vhost each)
pytestmark = pytest.mark.parametrize("job_queue_type", ["classic", "quorum"])

NAMEKO = str(Path(sys.executable).with_name("nameko"))


def upload(web, data):
    response = web.post("/upload", files={"image": ("photo.jpg", data)})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def storage_record(config, image_id):
    with ClusterRpcProxy(config, timeout=10) as rpc:
        return rpc.storage.get_image(image_id)


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
    for _ in range(200):
        variants = storage_record(pipeline_config, image_id)["variants"]
        if all(variant["writes"] == 2 for variant in variants.values()):
            break
        import time
        time.sleep(0.05)
    assert {name: variant["writes"] for name, variant in variants.items()} == {"thumb": 2, "medium": 2}
    assert web.get("/images/" + image_id).json()["status"] == "done"


def test_duplicate_event_writes_nothing_twice(pipeline, web, pipeline_config):
    from nameko.standalone.events import event_dispatcher

    image_id = upload(web, make_jpeg(500, 500, color=(5, 200, 5)))
    done = wait_for_status(web, image_id)
    dispatch = event_dispatcher(pipeline_config)
    for _ in range(3):
        dispatch("gateway", "image_uploaded", {"id": image_id})
    # a new upload after them: once it is done, the duplicates queued before it were handled
    wait_for_status(web, upload(web, make_jpeg(64, 64, color=(1, 1, 1))))
    with ClusterRpcProxy(pipeline_config, timeout=10) as rpc:
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

    imaging = runner_factory(pipeline_config, ImagingService)
    imaging.start()  # first attempt times out, the job waits in a retry queue
    import eventlet
    eventlet.sleep(1.5)
    storage = runner_factory(pipeline_config, StorageService)
    storage.start()
    status = wait_for_status(web, image_id, timeout=20)
    assert status["status"] == "done", status
    assert status["attempts"] >= 1


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
