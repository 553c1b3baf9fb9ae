"""AMQP plumbing shared by the other extensions: broker errors, queue declaration,
confirmed publishing under a deadline, and a queue consumer that survives a
broker node vanishing.

Patches nameko 2.14.1's ``QueueConsumer`` (``PATCHED_FOR`` in
``services/extensions/__init__.py``).
"""
import logging
from functools import partial

import eventlet
from amqp.exceptions import ConnectionError as AmqpConnectionError
from kombu import Connection
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher as AmqpPublisher
from nameko.amqp.publish import UndeliverableMessage
from nameko.constants import AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY
from nameko.messaging import QueueConsumer

from imagepipe.errors import Unavailable
from services import topology

log = logging.getLogger(__name__)

BROKER_ERRORS = (OperationalError, ConnectionError, OSError, AmqpConnectionError)


class FailoverQueueConsumer(QueueConsumer):
    """nameko's queue consumer, surviving a broker node that vanishes mid-acknowledgement.

    nameko ignores only amqp's ConnectionError there; a node killed outright
    resets the socket instead (ConnectionResetError, BrokenPipeError), which
    would kill the whole service.  The broker re-queues every unacknowledged
    delivery of a lost connection anyway, so the error is only logged; the
    consumer reconnects (to the next node of a fail-over AMQP_URI).
    """

    # for GET /health (services/extensions/health.py): the connection the
    # consumers run on, and whether the container has begun to stop
    consuming_on = None
    stopping = False

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        self.consuming_on = connection
        super().on_consume_ready(connection, channel, consumers, **kwargs)

    def unregister_provider(self, provider):
        self.stopping = True  # the container stops its entrypoints: no new work from here on
        super().unregister_provider(provider)

    @property
    def consuming(self):
        """Consumers registered with the broker on a connection that is still up."""
        return (self._consumers_ready.ready() and self.consuming_on is not None
                and self.consuming_on.connected)

    def ack_message(self, message):
        try:
            super().ack_message(message)
        except OSError as exc:
            log.warning("could not acknowledge a message, the broker connection is gone (%s); "
                        "RabbitMQ delivers it again", exc)

    def requeue_message(self, message):
        try:
            super().requeue_message(message)
        except OSError as exc:
            log.warning("could not requeue a message, the broker connection is gone (%s); "
                        "RabbitMQ requeues it itself", exc)


def declare_queues(config, queues):
    """Declare queues at start-up; stop the service if RabbitMQ refuses it."""
    with Connection(config[AMQP_URI_CONFIG_KEY], ssl=config.get(AMQP_SSL_CONFIG_KEY)) as conn:
        try:
            topology.declare_or_explain(conn, queues, config)
        except topology.QueueMismatch as exc:
            log.critical("%s", exc)
            raise


def ready_messages(config, queue):
    """Messages waiting in ``queue`` (not those delivered and unacknowledged), by a passive declare."""
    with Connection(config[AMQP_URI_CONFIG_KEY], ssl=config.get(AMQP_SSL_CONFIG_KEY)) as conn:
        channel = conn.channel()
        try:
            return queue(channel).queue_declare(passive=True).message_count
        finally:
            channel.close()


def retire_legacy_queues(config, queue):
    """``topology.retire_legacy_queues`` on a connection of its own that confirms publishes."""
    with Connection(config[AMQP_URI_CONFIG_KEY], ssl=config.get(AMQP_SSL_CONFIG_KEY),
                    transport_options={"confirm_publish": True}) as conn:
        return topology.retire_legacy_queues(conn, queue, config)


def publish_within_deadline(publish, timeout, what):
    """Run ``publish()`` (a confirmed, mandatory publish); any broker failure is ``Unavailable``.

    Confirms and mandatory routing make a lost message an error; the deadline
    makes a broker that never confirms one too, instead of a hung worker.
    """
    deadline = eventlet.Timeout(timeout)
    try:
        publish()
    except eventlet.Timeout as exc:
        if exc is not deadline:
            raise
        raise Unavailable("the message broker did not confirm the {}".format(what)) from None
    except UndeliverableMessage:
        raise Unavailable("no queue accepted the {}".format(what)) from None
    except BROKER_ERRORS as exc:
        raise Unavailable("the message broker is unreachable ({})".format(
            type(exc).__name__)) from None
    finally:
        deadline.cancel()


class QueuePublisher:
    """Confirmed, mandatory publishes straight to named queues (the default exchange).

    For messages meant for one queue only -- a retry, a dead letter, a
    re-dispatched job -- rather than for whoever listens to an event.
    """

    def __init__(self, config, serializer, timeout):
        self.timeout = timeout
        self.publisher = AmqpPublisher(
            config[AMQP_URI_CONFIG_KEY], serializer=serializer, use_confirms=True,
            mandatory=True, exchange=topology.DEFAULT_EXCHANGE, ssl=config.get(AMQP_SSL_CONFIG_KEY))

    def publish(self, message, queue, what, **options):
        """Publish ``message`` to ``queue`` (declared first); ``Unavailable`` if it did not land."""
        publish_within_deadline(
            partial(self.publisher.publish, message, routing_key=queue.name, declare=[queue],
                    **options),
            self.timeout, what)
