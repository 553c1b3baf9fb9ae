"""Which messages RabbitMQ keeps on disk: jobs yes, RPC traffic no.

RPC requests and replies are transient (services/extensions/rpc.py,
TransientResponder explains why); the messages are read off the real broker
here by a plain kombu client standing in for the other side of the call.
"""
import uuid

import eventlet
from kombu import Connection, Exchange, Queue
from nameko.constants import NON_PERSISTENT, PERSISTENT

from services import topology
from services.gateway import GatewayService
from services.storage import StorageService
from tests.helpers import make_jpeg

RPC_EXCHANGE = Exchange("nameko-rpc", type="topic", durable=True)


def read_one(conn, queue, timeout=10):
    """The first message on ``queue`` (consumed and acked)."""
    received = []

    def on_message(body, message):
        received.append((body, message))
        message.ack()

    with conn.Consumer(queue, callbacks=[on_message], accept=["msgpack", "json"]):
        deadline = eventlet.Timeout(timeout)
        try:
            while not received:
                conn.drain_events(timeout=timeout)
        finally:
            deadline.cancel()
    return received[0]


def test_rpc_replies_are_transient(container_factory, pipeline_config):
    container_factory(StorageService, pipeline_config).start()
    reply_queue = Queue("test-replies-" + uuid.uuid4().hex, exchange=RPC_EXCHANGE,
                        routing_key="test-replies", exclusive=True, auto_delete=True)
    with Connection(pipeline_config["AMQP_URI"]) as conn:
        reply_queue(conn.default_channel).declare()
        conn.Producer().publish(
            {"args": [], "kwargs": {}}, exchange=RPC_EXCHANGE, routing_key="storage.ping",
            reply_to="test-replies", correlation_id="call-1", serializer="msgpack")
        body, message = read_one(conn, reply_queue)
    assert body == {"result": "pong", "error": None}
    assert message.properties["correlation_id"] == "call-1"
    assert message.properties["delivery_mode"] == NON_PERSISTENT


def test_rpc_requests_are_transient_and_expire(container_factory, pipeline_config, web):
    """The gateway's call to storage, answered by this test instead of storage."""
    container_factory(GatewayService, pipeline_config).start()
    standing_in = Queue("test-storage-" + uuid.uuid4().hex, exchange=RPC_EXCHANGE,
                        routing_key="storage.*", exclusive=True, auto_delete=True)
    with Connection(pipeline_config["AMQP_URI"]) as conn:
        standing_in(conn.default_channel).declare()
        status = eventlet.spawn(web.get, "/images/" + "a" * 32)
        body, request = read_one(conn, standing_in)
        conn.Producer().publish(
            {"result": None, "error": {"exc_path": "imagepipe.errors.NotFound", "exc_type": "NotFound",
                                       "exc_args": ["no image"], "value": "no image"}},
            exchange=RPC_EXCHANGE, routing_key=request.properties["reply_to"],
            correlation_id=request.properties["correlation_id"], serializer="msgpack")
        response = status.wait()
    assert request.delivery_info["routing_key"] == "storage.get_image"
    assert body["args"] == ["a" * 32, None]  # the image id, and no tenant (no API keys)
    assert request.properties["delivery_mode"] == NON_PERSISTENT
    assert float(request.properties["expiration"]) == pipeline_config["RPC_TIMEOUT"] * 1000
    # storage's error reached the gateway as its own type: a JSON 404
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_jobs_stay_persistent(container_factory, pipeline_config, web):
    """Without imaging, the job an upload dispatches waits in its durable queue."""
    container_factory(GatewayService, pipeline_config).start()
    container_factory(StorageService, pipeline_config).start()
    response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 48), "image/jpeg")})
    assert response.status_code == 202
    with Connection(pipeline_config["AMQP_URI"]) as conn:
        body, message = read_one(conn, topology.job_queue(pipeline_config))
    assert body == {"id": response.json()["id"]}
    assert message.properties["delivery_mode"] == PERSISTENT
