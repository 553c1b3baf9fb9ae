"""The scaler's view of the job queue (imagepipe.scaling.probe) on the real broker."""
import time

import kombu
import pytest

from harness.rabbit import ScratchVhost, management_url
from imagepipe.scaling.policy import Observation
from imagepipe.scaling.probe import JOB_QUEUE, ProbeFailed, QueueProbe, retry_queue_names
from services import topology
from tests.helpers import load_config

DELAYS = (1.0, 5.0)


@pytest.fixture
def vhost():
    with ScratchVhost("probe") as scratch:
        yield scratch


@pytest.fixture
def config(vhost):
    config = load_config()
    config["AMQP_URI"] = vhost.amqp_uri
    config["JOB_RETRY_DELAYS"] = ",".join(str(delay) for delay in DELAYS)
    return config


def test_names_are_the_topology_ones(config):
    assert JOB_QUEUE == topology.JOB_QUEUE
    assert retry_queue_names(DELAYS) == [topology.job_retry_queue(delay, config).name
                                         for delay in DELAYS]


def test_queues_that_do_not_exist_yet_hold_nothing(vhost):
    probe = QueueProbe(vhost.amqp_uri, DELAYS)
    try:
        assert probe.observe() == Observation(ready=0, consumers=0, retrying=0, unacked=None)
    finally:
        probe.close()


def test_ready_consumers_retrying_and_in_flight(vhost, config):
    probe = QueueProbe(vhost.amqp_uri, DELAYS, management_url())
    with kombu.Connection(vhost.amqp_uri) as conn:
        channel = conn.channel()
        job_queue = topology.job_queue(config)(channel)
        job_queue.declare()
        producer = kombu.Producer(channel, exchange=topology.DEFAULT_EXCHANGE)
        for number in range(3):
            producer.publish({"id": number}, routing_key=JOB_QUEUE, serializer="json")
        retry = topology.job_retry_queue(5.0, config)
        for number in range(2):
            producer.publish({"id": number}, routing_key=retry.name, declare=[retry],
                             serializer="json")
        assert probe.observe() == Observation(ready=3, consumers=0, retrying=2, unacked=0)

        # a consumer holding one job unacknowledged, like a busy imaging process
        held = []
        consumer_channel = conn.channel()
        consumer_channel.basic_qos(0, 1, False)
        with kombu.Consumer(consumer_channel, [job_queue], callbacks=[lambda body, m: held.append(m)],
                            accept=["json"]):
            conn.drain_events(timeout=5)
            assert len(held) == 1
            observation = probe.observe()
            assert (observation.ready, observation.consumers, observation.retrying) == (2, 1, 2)
            # the management API samples every stats interval
            deadline = time.monotonic() + 30
            while observation.unacked != 1 and time.monotonic() < deadline:
                time.sleep(0.5)
                observation = probe.observe()
            assert observation.unacked == 1
    probe.close()


def test_an_unreachable_broker_is_a_probe_failure(vhost):
    probe = QueueProbe(vhost.amqp_uri.rsplit("/", 1)[0] + "/no-such-vhost", DELAYS, timeout=2)
    with pytest.raises(ProbeFailed, match="broker"):
        probe.observe()
    probe.close()
