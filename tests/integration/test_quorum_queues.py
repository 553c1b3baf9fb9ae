"""JOB_QUEUE_TYPE: the queues RabbitMQ really holds, poison jobs, type switches."""
import os
import subprocess

import pytest
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy

from harness.processes import NAMEKO
from services import topology
from services.gateway import GatewayService
from services.imaging import ImagingService
from services.storage import StorageService
from tests.helpers import REPO_ROOT, make_jpeg, upload, wait_for_status, wait_for_writes

RETRY_QUEUES = ["imaging.jobs.retry.0.2s", "imaging.jobs.retry.0.5s"]  # pipeline_config's JOB_RETRY_DELAYS
QUORUM_DEAD_LETTERING = {
    "x-queue-type": "quorum",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


@pytest.mark.parametrize("job_queue_type, rpc_queue_type", [("classic", "classic"),
                                                            ("quorum", "quorum")])
def test_declared_queues_have_the_configured_type_and_arguments(
        pipeline, web, rabbit_manager, rabbit_config, job_queue_type, rpc_queue_type):
    image_id = upload(web, make_jpeg(200, 150))
    assert wait_for_status(web, image_id)["status"] == "done"
    vhost = rabbit_config["vhost"]
    job_queue = rabbit_manager.get_queue(vhost, topology.JOB_QUEUE)
    dead_letters = rabbit_manager.get_queue(vhost, topology.DEAD_LETTER_QUEUE)
    retries = [rabbit_manager.get_queue(vhost, name) for name in RETRY_QUEUES]

    rpc_queues = [rabbit_manager.get_queue(vhost, "rpc-" + name) for name in ("storage", "imaging")]
    for queue in rpc_queues:
        assert queue["type"] == rpc_queue_type, queue["name"]
        assert queue["arguments"] == ({"x-queue-type": "quorum"} if rpc_queue_type == "quorum" else {})
    for queue in [job_queue, dead_letters, *retries]:
        assert queue["type"] == job_queue_type, queue["name"]
        assert queue["durable"] and not queue["auto_delete"] and not queue["exclusive"]
    if job_queue_type == "classic":
        assert job_queue["arguments"] == {}  # exactly as before quorum support
        assert dead_letters["arguments"] == {}
        assert "x-queue-type" not in retries[0]["arguments"]
        return
    assert job_queue["arguments"] == dict(
        QUORUM_DEAD_LETTERING, **{"x-delivery-limit": 10, "x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": topology.DEAD_LETTER_QUEUE})
    # no delivery limit on the dead letters: peeking returns them, a limit would drop them
    assert dead_letters["arguments"] == {"x-queue-type": "quorum"}
    assert retries[0]["arguments"] == dict(
        QUORUM_DEAD_LETTERING, **{"x-message-ttl": 200, "x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": topology.JOB_QUEUE})
    # (the image got done: imaging consumed the very queue the gateway declared;
    # a handler declaring it with other arguments would have been refused)


def crash_while_holding_a_job(config):
    """What a worker dying mid-job looks like to RabbitMQ: a delivery never acknowledged."""
    with Connection(config["AMQP_URI"]) as conn:
        channel = conn.channel()
        message = topology.job_queue(config)(channel).get(no_ack=False)
        assert message is not None, "no job to take"
        return message.headers.get("x-delivery-count")
    # leaving the block closes the connection: the job goes back, its delivery count + 1


@pytest.mark.parametrize("job_queue_type", ["quorum"])
def test_poison_job_is_dead_lettered_by_its_delivery_limit_and_healed(
        runner_factory, pipeline_config, web):
    pipeline_config.update(JOB_DELIVERY_LIMIT=2, STALLED_AFTER=4, SWEEP_INTERVAL=0.5)
    front = runner_factory(pipeline_config, GatewayService, StorageService)
    front.start()
    image_id = upload(web, make_jpeg(320, 200, color=(90, 10, 10)))

    # three deliveries, three dead workers: the limit (2 returns) is spent
    counts = [crash_while_holding_a_job(pipeline_config) for _ in range(3)]
    assert counts == [0, 1, 2]
    with Connection(pipeline_config["AMQP_URI"]) as conn:
        assert topology.job_queue(pipeline_config)(conn.channel()).get(no_ack=False) is None

    imaging = runner_factory(pipeline_config, ImagingService)
    imaging.start()
    with ClusterRpcProxy(pipeline_config, timeout=10) as rpc:
        letters = rpc.imaging.dead_letters()
        assert [letter["job"] for letter in letters] == [{"id": image_id}]
        assert "JOB_DELIVERY_LIMIT" in letters[0]["error"]
        assert letters[0]["dead_lettered_at"]
        # meanwhile the image is unfinished, so the storage sweeper dispatches it again
        assert web.get("/images/" + image_id).json()["status"] == "pending"
        done = wait_for_status(web, image_id, timeout=30)
        assert done["status"] == "done", done
        assert rpc.imaging.dead_letters() == letters  # parked until an operator acts

        assert rpc.imaging.replay_dead_letters() == [image_id]
        assert rpc.imaging.dead_letters() == []
    # the replay re-rendered the presets (reprocess), the status stayed done
    wait_for_writes(pipeline_config, image_id, {"thumb": 2, "medium": 2})
    assert web.get("/images/" + image_id).json()["status"] == "done"


def test_switching_a_live_queue_type_is_refused_at_start_up_with_advice(
        runner_factory, pipeline_config, rabbit_config):
    classic = runner_factory(pipeline_config, GatewayService)
    classic.start()  # the job queue now exists as a classic queue

    quorum_config = dict(pipeline_config, JOB_QUEUE_TYPE="quorum")
    for service in (GatewayService, ImagingService):
        with pytest.raises(topology.QueueMismatch) as refused:
            runner_factory(quorum_config, service).start()
        assert "JOB_QUEUE_TYPE=quorum" in str(refused.value)
        assert "rabbitmqctl delete_queue " in str(refused.value)
    # the same for an RPC queue
    runner_factory(pipeline_config, StorageService).start()
    with pytest.raises(topology.QueueMismatch) as refused:
        runner_factory(dict(pipeline_config, RPC_QUEUE_TYPE="quorum"), StorageService).start()
    assert "rabbitmqctl delete_queue rpc-storage" in str(refused.value)

    # as an operator sees it: `nameko run` exits at once and says why
    env = dict(os.environ, AMQP_URI=pipeline_config["AMQP_URI"], JOB_QUEUE_TYPE="quorum",
               WEB_SERVER_ADDRESS=pipeline_config["WEB_SERVER_ADDRESS"].rsplit(":", 1)[0] + ":0")
    run = subprocess.run([NAMEKO, "run", "--config", "config.yaml", "services.imaging"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "CRITICAL" in run.stderr + run.stdout
    # imaging declares its queues at once: whichever refusal comes first is reported
    # (the job queue's names x-dead-letter-exchange, the dead letters' x-queue-type)
    assert "PRECONDITION_FAILED - inequivalent arg" in run.stderr + run.stdout
    assert "JOB_QUEUE_TYPE=quorum" in run.stderr + run.stdout
