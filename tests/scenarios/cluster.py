"""Running the services as real OS processes against a scratch vhost.

Used by the chaos scenario and the process-level tests: each service is a
`nameko run --config config.yaml services.X` process, configured only through
the environment, exactly as an operator would run it.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMEKO = str(Path(sys.executable).with_name("nameko"))
MANAGEMENT = os.environ.get("RABBIT_API_URI", "http://guest:guest@127.0.0.1:15672")
BROKER = os.environ.get("RABBIT_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScratchVhost:
    """A RabbitMQ vhost created for one run and deleted afterwards."""

    def __init__(self, prefix="scenario"):
        self.name = "{}-{}".format(prefix, uuid.uuid4().hex[:8])
        self.amqp_uri = "{}/{}".format(BROKER, self.name)

    def __enter__(self):
        api = requests.Session()
        api.put("{}/api/vhosts/{}".format(MANAGEMENT, self.name), timeout=10).raise_for_status()
        api.put("{}/api/permissions/{}/guest".format(MANAGEMENT, self.name), timeout=10,
                json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        return self

    def __exit__(self, *exc):
        wait_for_management()
        requests.delete("{}/api/vhosts/{}".format(MANAGEMENT, self.name), timeout=30)

    def queue(self, name):
        response = requests.get("{}/api/queues/{}/{}".format(MANAGEMENT, self.name, name), timeout=10)
        response.raise_for_status()
        return response.json()

    def queues(self):
        response = requests.get("{}/api/queues/{}".format(MANAGEMENT, self.name), timeout=10)
        response.raise_for_status()
        return response.json()


def wait_for_management(timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(MANAGEMENT + "/api/overview", timeout=5).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError("the RabbitMQ management API did not come back")


class ServiceProcess:
    """One `nameko run` process; restartable; logs to a file."""

    def __init__(self, module, env, log_dir, label=None):
        self.module = module
        self.env = env
        self.label = label or module.rsplit(".", 1)[-1]
        self.log_path = Path(log_dir) / "{}.log".format(self.label)
        self.process = None
        self.starts = 0

    def start(self):
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [NAMEKO, "run", "--config", "config.yaml", self.module],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.starts += 1
        return self

    @property
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def kill(self):
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout=15):
        """SIGTERM, as docker stop does; returns the seconds it took to exit."""
        if not self.alive:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return float("inf")
        return time.monotonic() - started

    def peak_rss_mb(self):
        try:
            for line in Path("/proc/{}/status".format(self.process.pid)).read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except (OSError, AttributeError):
            pass
        return None


def service_env(amqp_uri, storage_root, port, **overrides):
    env = dict(os.environ)
    env.update({
        "AMQP_URI": amqp_uri,
        "STORAGE_ROOT": str(storage_root),
        "WEB_SERVER_ADDRESS": "127.0.0.1:{}".format(port),
        "LOG_LEVEL": "INFO",
    })
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def wait_for_http(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("{} did not answer within {} s".format(url, timeout))


def rabbitmq_restart(down_seconds=3.0):
    """Stop and start the RabbitMQ application (the local node)."""
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    time.sleep(down_seconds)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    subprocess.run(["rabbitmqctl", "await_startup"], capture_output=True, timeout=120)
