"""Upgrading a broker that holds an earlier release's queues loses no job."""
import pytest
from amqp.exceptions import NotFound
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from services import topology
from services.gateway import GatewayService
from services.imaging import ImagingService
from services.storage import StorageService
from tests.helpers import make_jpeg, wait_for_status

LEGACY_JOB_QUEUE = "evt-gateway-image_uploaded--imaging.handle_image_uploaded"


def ready_messages(conn, name):
    return conn.channel().queue_declare(name, passive=True).message_count


def test_jobs_waiting_in_the_pre_0_2_job_queue_are_moved_and_done(
        runner_factory, container_factory, pipeline_config, web):
    # the queue nameko's @event_handler made for imaging before 0.2, still bound
    legacy = Queue(LEGACY_JOB_QUEUE, exchange=get_event_exchange("gateway", pipeline_config),
                   routing_key="image_uploaded", durable=True)
    with Connection(pipeline_config["AMQP_URI"]) as conn:
        legacy(conn.default_channel).declare()
        runner_factory(pipeline_config, GatewayService, StorageService).start()
        response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(120, 80))})
        assert response.status_code == 202, response.text
        # the job reached both queues; only the old one is to hold it at the upgrade
        Queue(topology.JOB_QUEUE)(conn.channel()).purge()
        assert ready_messages(conn, LEGACY_JOB_QUEUE) == 1

        container_factory(ImagingService, pipeline_config).start()  # the new release's imaging

        assert wait_for_status(web, response.json()["id"])["status"] == "done"
        with pytest.raises(NotFound):
            ready_messages(conn, LEGACY_JOB_QUEUE)
