"""topology.declare_or_explain: a new durable queue declared by two processes at once."""
from unittest.mock import Mock

import pytest
from amqp.exceptions import NotFound, PreconditionFailed

from services import topology

HOME_NODE_DOWN = NotFound("Queue.declare: (404) NOT_FOUND - home node 'rabbit@localhost' of durable "
                          "queue 'imaging.dead-letters' in vhost 'v' is down or inaccessible")
CONFIG = {"JOB_QUEUE_TYPE": "classic"}


def queue_failing(*errors):
    """A kombu-Queue-like callable whose declare() raises ``errors`` in turn, then succeeds."""
    bound = Mock()
    bound.declare.side_effect = [*errors, None]
    queue = Mock(return_value=bound)
    queue.name = "imaging.dead-letters"
    return queue, bound


def test_home_node_down_while_another_process_creates_the_queue_is_retried():
    queue, bound = queue_failing(HOME_NODE_DOWN, HOME_NODE_DOWN)
    topology.declare_or_explain(Mock(), [queue], CONFIG)
    assert bound.declare.call_count == 3


def test_a_home_node_that_stays_down_fails_when_the_time_is_up():
    queue, _ = queue_failing(*[HOME_NODE_DOWN] * 100)
    with pytest.raises(NotFound):
        topology.declare_or_explain(Mock(), [queue], CONFIG, settle_seconds=0.5)


def test_other_not_found_errors_are_not_retried():
    queue, bound = queue_failing(NotFound("no vhost"))
    with pytest.raises(NotFound):
        topology.declare_or_explain(Mock(), [queue], CONFIG)
    assert bound.declare.call_count == 1


def test_changed_queue_arguments_still_explain_themselves():
    queue, _ = queue_failing(PreconditionFailed("inequivalent arg 'x-queue-type'"))
    with pytest.raises(topology.QueueMismatch, match="cannot change while it exists"):
        topology.declare_or_explain(Mock(), [queue], CONFIG)
