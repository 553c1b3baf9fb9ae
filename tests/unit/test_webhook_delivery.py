"""WebhookDeliveries.handle without a broker: what reaches storage and the sender."""
import pytest

from imagepipe.errors import NotFound, Unavailable
from imagepipe.settings import Settings
from imagepipe.webhooks.delivery import Attempt
from services.extensions.providers import WebhookDeliveries
from services.topology import DELIVERY_QUEUE, delivery_queue
from services.topology import delivery_retry_queue as retry_queue

IMAGE_ID = "ab" * 16
RECORD = {
    "id": IMAGE_ID, "status": "done", "error": None, "attempts": 1,
    "original": {"format": "JPEG", "mime_type": "image/jpeg", "width": 2, "height": 1,
                 "frames": 1, "bytes": 3, "sha256": "c" * 64},
    "variants": {}, "created_at": "t0", "updated_at": "t1", "callback_url": "https://h.example/x",
}


class Recorded(WebhookDeliveries):
    """The provider with its sender and publisher replaced by recorders."""

    def __init__(self, result):
        super().__init__()
        self.settings = Settings(webhook_retry_delays=(1.0, 5.0), public_url="https://img.example")
        self.retry_queues = {delay: retry_queue(delay, {}) for delay in self.settings.webhook_retry_delays}
        self.sent, self.published = [], []
        self.sender = type("Sender", (), {"send": lambda _, url, body: self.sent.append((url, body)) or result})()

    def _publish(self, message, queue):
        self.published.append((queue.name, message))


def never_called(image_id):
    raise AssertionError("storage must not be asked")


def test_an_image_without_callback_costs_no_storage_call():
    webhooks = Recorded(Attempt(True, "HTTP 200"))
    assert webhooks.handle({"id": IMAGE_ID, "status": "done", "has_callback": False}, never_called) is None
    assert webhooks.sent == [] and webhooks.published == []


def test_a_delivery_posts_the_public_status_with_absolute_links():
    webhooks = Recorded(Attempt(True, "HTTP 204"))
    decision = webhooks.handle({"id": IMAGE_ID, "has_callback": True}, lambda image_id: RECORD)
    assert decision.outcome == "delivered"
    [(url, body)] = webhooks.sent
    assert url == "https://h.example/x"
    assert body["links"]["self"] == "https://img.example/images/" + IMAGE_ID
    assert "callback_url" not in body  # the public status never shows it


def test_a_failed_attempt_goes_to_the_retry_queue_of_its_delay():
    webhooks = Recorded(Attempt(False, "HTTP 500"))
    webhooks.handle({"id": IMAGE_ID}, lambda image_id: RECORD)
    webhooks.handle({"id": IMAGE_ID, "webhook": {"attempt": 1, "callback_url": "https://h.example/x"}},
                    lambda image_id: RECORD)
    assert [name for name, _ in webhooks.published] == ["webhooks.deliveries.retry.1s", "webhooks.deliveries.retry.5s"]
    assert webhooks.published[1][1]["webhook"]["attempt"] == 2
    final = webhooks.handle({"id": IMAGE_ID, "webhook": {"attempt": 2, "callback_url": "https://h.example/x"}},
                            lambda image_id: RECORD)
    assert final.outcome == "gave_up" and len(webhooks.published) == 2


@pytest.mark.parametrize("error, published", [(NotFound("gone"), []), (Unavailable("down"), ["webhooks.deliveries.retry.1s"])])
def test_storage_trouble_is_retried_and_unknown_images_dropped(error, published):
    webhooks = Recorded(Attempt(True, ""))

    def get_image(image_id):
        raise error

    webhooks.handle({"id": IMAGE_ID}, get_image)
    assert [name for name, _ in webhooks.published] == published and webhooks.sent == []


def test_retry_queues_dead_letter_straight_back_to_the_delivery_queue():
    queue = retry_queue(1.5, {})
    assert queue.name == "webhooks.deliveries.retry.1.5s" and queue.durable
    assert queue.queue_arguments == {
        "x-message-ttl": 1500, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": DELIVERY_QUEUE}
    assert DELIVERY_QUEUE == "webhooks.deliveries"
    assert delivery_queue({}).queue_arguments is None


def test_with_quorum_job_queues_the_webhook_queues_are_quorum_too():
    config = {"JOB_QUEUE_TYPE": "quorum"}
    assert delivery_queue(config).queue_arguments == {"x-queue-type": "quorum"}
    arguments = retry_queue(5, config).queue_arguments
    assert arguments["x-queue-type"] == "quorum" and arguments["x-message-ttl"] == 5000
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert (arguments["x-dead-letter-exchange"], arguments["x-dead-letter-routing-key"]) == ("", DELIVERY_QUEUE)


DELETED = {"id": IMAGE_ID, "deleted_at": "2026-01-02T03:04:05.678+00:00",
           "callback_url": "https://h.example/x"}


def test_a_deletion_is_posted_from_the_event_alone():
    webhooks = Recorded(Attempt(True, "HTTP 204"))
    decision = webhooks.handle(DELETED, never_called)  # the image is gone from storage
    assert decision.outcome == "delivered"
    assert webhooks.sent == [("https://h.example/x", {
        "id": IMAGE_ID, "status": "deleted", "deleted_at": DELETED["deleted_at"]})]


def test_a_failed_deletion_delivery_is_retried_with_what_it_needs():
    webhooks = Recorded(Attempt(False, "HTTP 503"))
    webhooks.handle(DELETED, never_called)
    [(queue, retry)] = webhooks.published
    assert queue == "webhooks.deliveries.retry.1s"
    assert retry == {"id": IMAGE_ID, "deleted_at": DELETED["deleted_at"],
                     "webhook": {"attempt": 1, "callback_url": "https://h.example/x"}}
    webhooks.handle(retry, never_called)
    final = webhooks.handle(webhooks.published[-1][1], never_called)
    assert final.outcome == "gave_up"
    assert [url for url, _ in webhooks.sent] == ["https://h.example/x"] * 3


def test_a_deletion_of_an_image_without_callback_sends_nothing():
    webhooks = Recorded(Attempt(True, ""))
    decision = webhooks.handle(dict(DELETED, callback_url=None), never_called)
    assert decision.outcome == "skipped" and webhooks.sent == [] and webhooks.published == []


def test_the_delivery_queue_takes_both_events():
    bindings = {(bound.exchange.name, bound.routing_key) for bound in delivery_queue({}).bindings}
    assert bindings == {("imaging.events", "image_processed"), ("storage.events", "image_deleted")}
