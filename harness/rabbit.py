"""RabbitMQ for tests and the benchmark: scratch vhosts, what the broker counted, restarts.

The management API creates and deletes one vhost per run and reports
per-vhost traffic: ``recv_oct``/``send_oct`` (AMQP bytes the broker received
from / sent to the vhost's connections) and per-exchange publish counts.
Octet counters are refreshed every stats interval (5 s by default) and the
last interval of a connection is lost when it closes, so they are read while
the services are still connected, after waiting one interval.  Queue depths
and consumer counts are read over AMQP instead (no stats delay).
"""
import os
import subprocess
import time
import uuid
from urllib.parse import quote

import kombu
import requests

MANAGEMENT = os.environ.get("RABBIT_API_URI", "http://127.0.0.1:15672").rstrip("/")
AMQP_BASE = os.environ.get("RABBIT_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")
AUTH = (os.environ.get("RABBIT_USER", "guest"), os.environ.get("RABBIT_PASSWORD", "guest"))
STATS_INTERVAL = float(os.environ.get("RABBIT_STATS_INTERVAL", "5"))


def _api(method, path, **kwargs):
    kwargs.setdefault("timeout", 15)
    response = requests.request(method, MANAGEMENT + "/api" + path, auth=AUTH, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def management_url():
    """The management API's base URL with the credentials in it, as SCALE_MANAGEMENT_URL takes it."""
    scheme, _, host = MANAGEMENT.partition("://")
    return "{}://{}:{}@{}".format(scheme, quote(AUTH[0], safe=""), quote(AUTH[1], safe=""), host)


def check_management():
    """Fail early, with a hint, when the management API does not answer."""
    try:
        return _api("GET", "/overview")["product_version"]
    except requests.RequestException as exc:
        raise SystemExit("RabbitMQ management API not reachable at {} ({}); run "
                         "scripts/ensure-broker.sh --management".format(MANAGEMENT, exc)) from None


def wait_for_management(timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _api("GET", "/overview", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise RuntimeError("the RabbitMQ management API did not come back")


def rabbitmq_restart(down_seconds=3.0):
    """Stop and start the RabbitMQ application (the local node)."""
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    time.sleep(down_seconds)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    subprocess.run(["rabbitmqctl", "await_startup"], capture_output=True, timeout=120)


class ScratchVhost:
    """A vhost of its own for one run: ``with ScratchVhost() as vhost`` or ``create()``/``delete()``."""

    def __init__(self, prefix="scratch"):
        self.name = "{}-{}".format(prefix, uuid.uuid4().hex[:10])
        self.amqp_uri = "{}/{}".format(AMQP_BASE, self.name)
        self.path = quote(self.name, safe="")
        self.created = False

    def create(self):
        _api("PUT", "/vhosts/" + self.path)
        self.created = True
        _api("PUT", "/permissions/{}/{}".format(self.path, quote(AUTH[0])),
             json={"configure": ".*", "write": ".*", "read": ".*"})
        return self

    def delete(self):
        """Idempotent; waits for the management API (it may be restarting)."""
        if self.created:
            try:
                wait_for_management()
                _api("DELETE", "/vhosts/" + self.path, timeout=30)
            except (requests.RequestException, RuntimeError):
                return False
            self.created = False
        return True

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.delete()

    def queue(self, name):
        return _api("GET", "/queues/{}/{}".format(self.path, quote(name, safe="")))

    def queues(self):
        return _api("GET", "/queues/" + self.path)

    def traffic(self):
        """{"recv_oct", "send_oct", "exchanges": {name: messages published in}}."""
        vhost = _api("GET", "/vhosts/" + self.path)
        exchanges = _api("GET", "/exchanges/" + self.path)
        return {
            "recv_oct": vhost.get("recv_oct", 0),
            "send_oct": vhost.get("send_oct", 0),
            "exchanges": {
                (exchange["name"] or "(default)"): (exchange.get("message_stats") or {}).get("publish_in", 0)
                for exchange in exchanges
            },
        }

    def settled_traffic(self, timeout=45, balanced=True):
        """Traffic counters once they have stopped moving.

        Each connection reports its octets every stats interval, and the
        management database can lag behind on a busy machine; so poll until
        the counters have been still for two intervals and (``balanced``)
        in/out agree (every message published here is delivered once), or
        ``timeout``.
        """
        deadline = time.monotonic() + timeout
        last, still_since = self.traffic(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.traffic()
            if (current["recv_oct"], current["send_oct"]) != (last["recv_oct"], last["send_oct"]):
                last, still_since = current, time.monotonic()
            elif time.monotonic() - still_since >= 2 * STATS_INTERVAL and (
                    _balanced(current) or not balanced):
                return current
        last["settled"] = False
        return last

    def consumer_counts(self, queue_names):
        """Consumers per queue, straight from the queues (no stats delay); missing = 0."""
        return {name: ok.consumer_count if ok else 0 for name, ok in self._declare_passive(queue_names)}

    def ready_messages(self, queue_name):
        """Messages waiting in a queue (delivered-but-unacknowledged ones not counted); missing = 0."""
        (_, ok), = self._declare_passive([queue_name])
        return ok.message_count if ok else 0

    def _declare_passive(self, queue_names):
        """[(name, queue_declare_ok or None if the queue does not exist)]."""
        results = []
        with kombu.Connection(self.amqp_uri, connect_timeout=5) as conn:
            for name in queue_names:
                channel = conn.channel()
                try:
                    results.append((name, channel.queue_declare(queue=name, passive=True)))
                except Exception:  # NOT_FOUND closes the channel: not declared yet
                    results.append((name, None))
                finally:
                    try:
                        channel.close()
                    except Exception:
                        pass
        return results


def traffic_between(before, after):
    """What moved between two ``traffic()`` readings (octets and messages per exchange)."""
    return {
        "recv_oct": after["recv_oct"] - before["recv_oct"],
        "send_oct": after["send_oct"] - before["send_oct"],
        "exchanges": {name: count - before["exchanges"].get(name, 0)
                      for name, count in after["exchanges"].items()},
        "settled": after.get("settled", True) and before.get("settled", True),
    }


def _balanced(traffic, tolerance=0.1):
    low, high = sorted((traffic["recv_oct"], traffic["send_oct"]))
    return high > 0 and (high - low) / high <= tolerance


def find_broker_pid():
    """PID of the local RabbitMQ node (beam.smp), for CPU accounting; None if not local."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/{}/comm".format(entry)) as comm:
                    if comm.read().strip() == "beam.smp":
                        return int(entry)
            except OSError:
                continue
    return None
