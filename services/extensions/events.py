"""Events and queues: dispatching jobs that cannot be lost, and consuming named queues.

- ``ConfirmedDispatcher``: nameko's ``EventDispatcher``, confirmed within a
  deadline (storage's ``image_deleted``);
- ``JobDispatcher``: the same for the gateway's ``image_uploaded``, also
  mandatory, after declaring the job queue;
- ``@queue_handler(queue_name)``: nameko's ``@consume`` on a durable work
  queue of ``services/topology.py``, built from config at start-up; a message is
  acknowledged after the handler returns and requeued if it raises (nameko's
  ``@event_handler`` acks and drops it);
- ``@event_subscriber``: nameko's ``@event_handler`` on the fail-over-safe
  queue consumer, for events whose loss only delays something.
"""
from functools import partial

from nameko.events import EventDispatcher, EventHandler
from nameko.messaging import Consumer

from imagepipe.settings import Settings
from services import topology
from services.extensions.amqp import (
    FailoverQueueConsumer, declare_queues, publish_within_deadline, retire_legacy_queues)


class ConfirmedDispatcher(EventDispatcher):
    """nameko's ``EventDispatcher`` whose dispatch returns once RabbitMQ has the event.

    A broker that does not confirm within ``RPC_TIMEOUT`` is ``Unavailable``
    (nameko's would wait as long as the broker takes).
    """

    what = "event"

    def setup(self):
        super().setup()
        self.timeout = Settings.from_config(self.container.config).rpc_timeout

    def get_dependency(self, worker_ctx):
        dispatch = super().get_dependency(worker_ctx)

        def dispatch_within_deadline(event_type, event_data):
            publish_within_deadline(partial(dispatch, event_type, event_data), self.timeout, self.what)

        return dispatch_within_deadline


class JobDispatcher(ConfirmedDispatcher):
    """Dispatches the gateway's ``image_uploaded`` so that a lost one is an error.

    Publishes with confirms and ``mandatory``, after declaring the job queue,
    so an accepted upload's job is on disk in RabbitMQ before the gateway
    answers 202; a broker that does not confirm within ``RPC_TIMEOUT`` is
    ``Unavailable``.
    """

    what = "job"

    def __init__(self, **options):
        options.setdefault("mandatory", True)
        super().__init__(**options)

    def setup(self):
        config = self.container.config
        queues = topology.job_queues(config)
        declare_queues(config, queues)
        self.declare.extend(queues)
        super().setup()


class QueueHandler(Consumer):
    """``@queue_handler(queue_name)``: consume the work queue of that name.

    The handler deals with every failure it can (retry or dead-letter); if
    it still raises -- the broker vanished while a retry was being scheduled
    -- the message goes back to the queue instead of being dropped.
    """

    queue_consumer = FailoverQueueConsumer()

    def __init__(self, queue_name, **kwargs):
        kwargs.setdefault("requeue_on_error", True)
        super().__init__(queue=None, **kwargs)
        self.queue_name = queue_name

    def setup(self):
        config = self.container.config
        self.queue = topology.consumed_queue(self.queue_name, config)
        declare_queues(config, [self.queue])
        retire_legacy_queues(config, self.queue)
        super().setup()


queue_handler = QueueHandler.decorator


class EventSubscriber(EventHandler):
    """nameko's ``@event_handler`` on the fail-over-safe queue consumer."""

    queue_consumer = FailoverQueueConsumer()


event_subscriber = EventSubscriber.decorator
