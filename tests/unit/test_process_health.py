"""services/extensions/health.py without a broker: states to answers, and the routing beside /metrics."""
import json
from types import SimpleNamespace

from eventlet.event import Event
from nameko.messaging import QueueConsumer

from services.extensions.amqp import FailoverQueueConsumer
from services.extensions.health import container_state, health, wsgi_app



def consumer(ready=True, connected=True, stopping=False):
    queue_consumer = FailoverQueueConsumer()
    queue_consumer._consumers_ready = Event()
    if ready:
        queue_consumer._consumers_ready.send(None)
        queue_consumer.consuming_on = SimpleNamespace(connected=connected)
    queue_consumer.stopping = stopping
    return queue_consumer


def container(name="imaging", started=True, killed=False, consumers=()):
    died = Event()
    return SimpleNamespace(service_name=name, started=started, _being_killed=killed, _died=died,
                           extensions=set(consumers))


def test_states():
    assert container_state(container(consumers=[consumer()])) == "ok"
    assert container_state(container(started=False, consumers=[consumer(ready=False)])) == "starting"
    assert container_state(container(consumers=[consumer(ready=False)])) == "starting"
    assert container_state(container(consumers=[consumer(connected=False)])) == "broker connection lost"
    assert container_state(container(consumers=[consumer(stopping=True)])) == "stopping"
    assert container_state(container(killed=True, consumers=[consumer()])) == "stopped"
    assert isinstance(consumer(), QueueConsumer)


def test_every_container_must_be_ok():
    good, bad = container("imaging", consumers=[consumer()]), container(
        "storage", consumers=[consumer(connected=False)])
    assert health([good]) == (200, {"status": "ok", "services": {"imaging": "ok"}})
    status, body = health([good, bad])
    assert status == 503 and body["error"] == "service_unavailable"
    assert body["message"] == "storage: broker connection lost"
    assert health([]) == (503, {"error": "service_unavailable", "message": "no service running",
                                "services": {}})


def test_health_is_served_beside_the_metrics():
    answers = []
    app = wsgi_app(lambda: [container(consumers=[consumer()])],
                   lambda environ, start_response: [b"metrics"])

    def start_response(status, headers):
        answers.append((status, dict(headers)))

    body = b"".join(app({"PATH_INFO": "/health", "REQUEST_METHOD": "GET"}, start_response))
    assert answers[-1][0] == "200 OK" and answers[-1][1]["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == "ok"
    assert app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"}, start_response) == [b"metrics"]
