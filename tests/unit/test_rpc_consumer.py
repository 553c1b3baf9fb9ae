"""ConfiguredRpcConsumer: a broker gone when an answer is ready does not kill the service."""
from unittest.mock import Mock, patch

import pytest
from amqp.exceptions import ConnectionForced
from kombu.exceptions import OperationalError

from services.extensions.rpc import ConfiguredRpcConsumer, TransientResponder

CONFIG = {"AMQP_URI": "amqp://guest:guest@localhost:5672/", "serializer": "msgpack"}


@pytest.fixture
def consumer():
    container = Mock(config=CONFIG, shared_extensions={})
    consumer = ConfiguredRpcConsumer().bind(container)  # holds the container weakly
    consumer.queue_consumer = Mock()
    yield consumer
    del container


@pytest.mark.parametrize("error", [OperationalError("[Errno 111] ECONNREFUSED"),
                                   ConnectionResetError(104, "Connection reset by peer"),
                                   ConnectionForced("broker forced connection closure")])
def test_answer_lost_to_a_vanished_broker_is_logged_not_raised(consumer, error, caplog):
    message = Mock()
    with patch.object(TransientResponder, "send_response", side_effect=error):
        assert consumer.handle_result(message, "pong", None) == ("pong", None)
    consumer.queue_consumer.ack_message.assert_called_once_with(message)
    assert "could not answer an RPC call" in caplog.text


def test_other_errors_still_surface(consumer):
    with patch.object(TransientResponder, "send_response", side_effect=RuntimeError("a bug")):
        with pytest.raises(RuntimeError):
            consumer.handle_result(Mock(), "pong", None)
