"""GET /health on the metrics exporter of imaging, storage and webhooks (real processes, real broker).

What Kubernetes probes and compose healthchecks call: 200 while the
process's containers run and consume, 503 while the broker connection is
gone and from the moment the process begins to stop.
"""
import signal
import time

import pytest
import requests

from harness.processes import ServiceProcess, free_port, service_env
from harness.rabbit import ScratchVhost


def wait_for_answer(url, wanted, timeout=60):
    """The first answer with status ``wanted`` (connection errors and other statuses: try again)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == wanted:
                return response
            last = response.status_code, response.text
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError("{} did not answer {} within {} s; last: {}".format(url, wanted, timeout, last))


@pytest.fixture
def vhost():
    with ScratchVhost("health") as scratch:
        yield scratch


@pytest.fixture
def start_service(vhost, tmp_path):
    started = []

    def start(name):
        port = free_port()
        env = service_env(vhost.amqp_uri, tmp_path / "storage", free_port(),
                          METRICS_ADDRESS="127.0.0.1:{}".format(port))
        process = ServiceProcess("services." + name, env, tmp_path).start()
        started.append(process)
        return process, "http://127.0.0.1:{}/health".format(port)

    yield start
    for process in started:
        process.kill()


@pytest.mark.parametrize("service", ["imaging", "storage", "webhooks"])
def test_a_running_service_answers_200_json(start_service, service):
    process, url = start_service(service)
    response = wait_for_answer(url, 200)
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "services": {service: "ok"}}
    # the metrics are still where they were
    assert "imagepipe_" in requests.get(url.replace("/health", "/metrics"), timeout=5).text
    assert process.alive


def test_503_while_the_broker_connection_is_gone_then_200_again(start_service, vhost):
    process, url = start_service("imaging")
    wait_for_answer(url, 200)
    # deleting the vhost closes every connection to it and refuses new ones
    vhost.delete()
    try:
        body = wait_for_answer(url, 503).json()
        assert body == {"error": "service_unavailable", "message": "imaging: broker connection lost",
                        "services": {"imaging": "broker connection lost"}}
    finally:
        vhost.create()  # the same name: the consumer's reconnection attempts succeed
    # the process survived the outage and consumes again
    assert wait_for_answer(url, 200).json()["services"] == {"imaging": "ok"}
    assert process.alive


def test_503_from_the_moment_the_process_stops(start_service):
    process, url = start_service("imaging")
    wait_for_answer(url, 200)
    process.signal(signal.SIGTERM)
    body = wait_for_answer(url, 503, timeout=15).json()
    assert body["services"]["imaging"] == "stopping"
    process.wait_or_kill(30)
    assert process.process.returncode == 0
