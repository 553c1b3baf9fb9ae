"""The broker goes away while storage is working on a call.

Storage finishes the call with RabbitMQ stopped, so its answer cannot be
sent.  nameko's default is to kill the service then; ours logs it, and once
the broker is back the same process serves uploads again.  (CI caught the
default as a storage process that died in a chaos run.)
"""
import socket
import sqlite3
import threading
import time

import pytest
import requests

from tests.helpers import make_jpeg
from harness.processes import ServiceProcess, free_port, service_env, wait_for_http
from harness.rabbit import ScratchVhost, rabbitmq_restart

# restarts the local RabbitMQ node with rabbitmqctl, as the chaos scenario does
pytestmark = pytest.mark.slow


def upload(base_url, data, timeout=30):
    return requests.post(base_url + "/upload", files={"image": ("a.jpg", data, "image/jpeg")},
                         timeout=timeout)


def upload_until_accepted(base_url, data, within=60):
    """503s are expected while the services (re)connect to a (re)started broker."""
    deadline = time.monotonic() + within
    while True:
        response = upload(base_url, data)
        if response.status_code == 202 or time.monotonic() > deadline:
            return response
        time.sleep(1)


def wait_until_broker_refuses(timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        except OSError:
            return
        time.sleep(0.2)
    raise AssertionError("RabbitMQ still accepts connections after {} s".format(timeout))


def test_storage_survives_answering_while_the_broker_is_down(tmp_path):
    with ScratchVhost("broker-gone") as vhost:
        port = free_port()
        storage_root = tmp_path / "storage"
        env = service_env(vhost.amqp_uri, storage_root, port, RPC_TIMEOUT=20)
        storage = ServiceProcess("services.storage", env, tmp_path)
        gateway = ServiceProcess("services.gateway", env, tmp_path)
        try:
            storage.start()
            gateway.start()
            base_url = "http://127.0.0.1:{}".format(port)
            wait_for_http(base_url + "/health")
            assert upload_until_accepted(base_url, make_jpeg(64, 48, (1, 2, 3))).status_code == 202

            # Hold the catalog so storage's next put_original blocks mid-call ...
            lock = sqlite3.connect(str(storage_root / "catalog.sqlite3"), isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            stuck = threading.Thread(target=lambda: upload(base_url, make_jpeg(64, 48, (4, 5, 6))))
            stuck.start()
            time.sleep(1)
            # ... stop RabbitMQ, and let storage finish while it is down; the
            # broker stays down past the publisher's retries (~3 s).
            restart = threading.Thread(target=rabbitmq_restart, kwargs={"down_seconds": 10})
            restart.start()
            wait_until_broker_refuses()
            lock.rollback()
            lock.close()
            restart.join(180)
            stuck.join(60)

            log = storage.log_path.read_text()
            # nameko's default: "thread exited with error", then "killing <ServiceContainer ...>"
            assert "killing <ServiceContainer" not in log, log[-3000:]
            assert "could not answer an RPC call" in log
            assert storage.alive
            # the same processes serve uploads again once they have reconnected
            response = upload_until_accepted(base_url, make_jpeg(64, 48, (7, 8, 9)))
            assert response.status_code == 202, response.text
            assert storage.alive and gateway.alive
        finally:
            storage.kill()
            gateway.kill()
