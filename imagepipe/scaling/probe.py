"""What the job queue holds, read from RabbitMQ for the scaler.

* Over AMQP, with passive declares on one long-lived connection: jobs
  *ready* in the job queue, its consumers, and the jobs waiting in each retry
  queue.  The broker answers from the queue itself, so a job is seen within
  one poll -- which is what makes a cold start fast.
* Optionally from the management API (``SCALE_MANAGEMENT_URL``): jobs
  delivered but not yet acknowledged, i.e. in flight.  Its numbers are
  sampled every stats interval (5 s by default), fine for scaling down,
  too slow for a cold start -- hence both.

A queue that does not exist yet (nothing was ever uploaded) holds nothing.
A broker that does not answer raises ``ProbeFailed``: the scaler then keeps
what it runs rather than act on a guess.
"""
from urllib.parse import quote

import kombu
import requests
from amqp.exceptions import NotFound
from kombu.exceptions import OperationalError

from imagepipe.scaling.policy import Observation

JOB_QUEUE = "imaging.jobs"  # services.topology.JOB_QUEUE (imagepipe does not import services)


def retry_queue_names(delays):
    """``imaging.jobs.retry.<delay>s`` for each retry delay, named as services.topology names them."""
    return ["{}.retry.{:g}s".format(JOB_QUEUE, delay) for delay in delays]


class ProbeFailed(Exception):
    """The broker (or its management API) did not answer."""


class QueueProbe:
    def __init__(self, amqp_uri, retry_delays=(), management_url="", timeout=5.0):
        self.connection = kombu.Connection(amqp_uri, connect_timeout=timeout)
        self.retry_queues = retry_queue_names(retry_delays)
        self.management_url = management_url
        self.vhost = self.connection.virtual_host or "/"
        self.timeout = timeout
        self._channel = None

    def observe(self):
        try:
            ready, consumers = self.declare_passive(JOB_QUEUE)
            retrying = sum(self.declare_passive(name)[0] for name in self.retry_queues)
        except (OSError, OperationalError, *self.connection.connection_errors) as exc:
            self.close()
            raise ProbeFailed("broker: {}: {}".format(type(exc).__name__, exc)) from None
        unacked = self.unacknowledged() if self.management_url else None
        return Observation(ready=ready, consumers=consumers, retrying=retrying, unacked=unacked)

    def declare_passive(self, queue_name):
        """``(ready messages, consumers)`` of a queue; (0, 0) if it does not exist."""
        if self._channel is None:
            self._channel = self.connection.channel()  # connects on first use
        try:
            ok = self._channel.queue_declare(queue=queue_name, passive=True)
        except NotFound:
            self._channel = None  # the broker closed the channel with its answer
            return 0, 0
        return ok.message_count, ok.consumer_count

    def unacknowledged(self):
        url = "{}/api/queues/{}/{}".format(
            self.management_url, quote(self.vhost, safe=""), quote(JOB_QUEUE, safe=""))
        try:
            response = requests.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ProbeFailed("management API: {}".format(type(exc).__name__)) from None
        if response.status_code == 404:
            return 0
        if response.status_code != 200:
            raise ProbeFailed("management API answered {}".format(response.status_code))
        return int(response.json().get("messages_unacknowledged") or 0)

    def close(self):
        self._channel = None
        try:
            self.connection.release()
        except Exception:  # closing a connection that is already gone
            pass
