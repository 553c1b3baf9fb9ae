"""WebhookDeliveries.handle without a broker: what reaches storage and the sender.

Storage is a real ``ImageStore`` (SQLite catalog, delivery ledger, files in
tmp_path) standing in for the storage RPC proxy; the sender and the
publisher are recorders.
"""
import time
from dataclasses import asdict

import pytest

from imagepipe.errors import NotFound, Unavailable
from imagepipe.records import DONE
from imagepipe.rendering.probe import probe
from imagepipe.settings import Settings
from imagepipe.storage.store import ImageStore
from imagepipe.webhooks.delivery import Attempt, HostSlots
from services.extensions.providers import WebhookDeliveries
from services.topology import DELIVERY_QUEUE, delivery_queue
from services.topology import delivery_retry_queue as retry_queue
from tests.helpers import make_jpeg

URL = "https://h.example/x"


class Recorded(WebhookDeliveries):
    """The provider with its sender and publisher replaced by recorders."""

    def __init__(self, result, max_per_host=2):
        super().__init__()
        self.settings = Settings(webhook_retry_delays=(1.0, 5.0), public_url="https://img.example",
                                 webhook_max_per_host=max_per_host)
        self.retry_queues = {delay: retry_queue(delay, {}) for delay in (1.0, 5.0)}
        self.slots = HostSlots(max_per_host)
        self.sent, self.published = [], []
        self.sender = type("Sender", (), {"send": lambda _, url, body: self.sent.append((url, body)) or result})()

    def _publish(self, message, queue):
        self.published.append((queue.name, message))


@pytest.fixture
def storage(tmp_path):
    store = ImageStore.from_settings(Settings.from_config({"STORAGE_ROOT": str(tmp_path)}))
    data = make_jpeg(32, 16)
    record, _ = store.put_original(data, asdict(probe(data)), URL)
    store.claim(record["id"])
    store.finish(record["id"], DONE)
    store.image_id = record["id"]
    return store


class Unreachable:
    def __init__(self, error):
        self.error = error

    def get_image(self, image_id):
        raise self.error


def test_an_image_without_callback_costs_no_storage_call():
    webhooks = Recorded(Attempt(True, "HTTP 200"))
    assert webhooks.handle({"id": "ab" * 16, "status": "done", "has_callback": False},
                           Unreachable(AssertionError("storage must not be asked"))) is None
    assert webhooks.sent == [] and webhooks.published == []


def test_a_delivery_posts_the_public_status_with_absolute_links(storage):
    webhooks = Recorded(Attempt(True, "HTTP 204"))
    decision = webhooks.handle({"id": storage.image_id, "has_callback": True}, storage)
    assert decision.outcome == "delivered"
    [(url, body)] = webhooks.sent
    assert url == URL
    assert body["links"]["self"] == "https://img.example/images/" + storage.image_id
    assert "callback_url" not in body  # the public status never shows it
    assert storage.deliveries.state(storage.image_id, URL, "done") == ("delivered", 1)


def test_a_failed_attempt_goes_to_the_retry_queue_of_its_delay(storage):
    webhooks = Recorded(Attempt(False, "HTTP 500"))
    image_id = storage.image_id
    webhooks.handle({"id": image_id}, storage)
    webhooks.handle({"id": image_id, "webhook": {"attempt": 1, "callback_url": URL}}, storage)
    assert [name for name, _ in webhooks.published] == ["webhooks.deliveries.retry.1s", "webhooks.deliveries.retry.5s"]
    assert webhooks.published[1][1]["webhook"]["attempt"] == 2
    final = webhooks.handle({"id": image_id, "webhook": {"attempt": 2, "callback_url": URL}}, storage)
    assert final.outcome == "gave_up" and len(webhooks.published) == 2
    assert storage.deliveries.state(image_id, URL, "done") == ("gave_up", 3)


def test_each_image_url_and_outcome_is_delivered_once_whoever_asks(storage):
    webhooks = Recorded(Attempt(True, "HTTP 204"))
    image_id = storage.image_id
    assert webhooks.handle({"id": image_id}, storage).outcome == "delivered"
    # the same event again (a redelivery), and re-uploads asking for the same URL
    again = [webhooks.handle({"id": image_id}, storage),
             webhooks.handle({"id": image_id, "webhook": {"attempt": 0, "callback_url": URL}}, storage)]
    assert [decision.outcome for decision in again] == ["skipped", "skipped"]
    assert len(webhooks.sent) == 1 and webhooks.published == []
    # a new URL recorded for the image is a new delivery
    data = storage.get_original(image_id)
    storage.put_original(data, asdict(probe(data)), "https://other.example/y")
    assert webhooks.handle({"id": image_id, "webhook": {"attempt": 0, "callback_url": "https://other.example/y"}},
                           storage).outcome == "delivered"
    assert [url for url, _ in webhooks.sent] == [URL, "https://other.example/y"]


def test_a_request_while_a_retry_waits_does_not_start_a_second_chain(storage):
    failing = Recorded(Attempt(False, "HTTP 503"))
    image_id = storage.image_id
    assert failing.handle({"id": image_id}, storage).outcome == "retry"
    # a re-upload asks again while the retry waits in RabbitMQ: nothing is sent
    assert failing.handle({"id": image_id, "webhook": {"attempt": 0, "callback_url": URL}},
                          storage).outcome == "skipped"
    assert len(failing.sent) == 1
    # the waiting retry itself goes ahead
    retry = failing.published[0][1]
    assert failing.handle(retry, storage).outcome == "retry" and len(failing.sent) == 2


def test_an_attempt_claimed_by_a_process_that_died_is_taken_over_by_its_redelivery(storage):
    image_id = storage.image_id
    # a process claimed attempt 1 and died before finishing it
    assert storage.claim_delivery(image_id, URL, "done", 0, lease_seconds=60) == "claimed"
    webhooks = Recorded(Attempt(True, "HTTP 204"))
    waiting = webhooks.handle({"id": image_id}, storage)  # RabbitMQ redelivers its message at once
    assert waiting.outcome == "deferred" and webhooks.published == [("webhooks.deliveries.retry.1s", {"id": image_id})]
    storage.catalog.clock = lambda: time.time() + 61  # the lease runs out
    assert webhooks.handle({"id": image_id}, storage).outcome == "delivered"
    assert len(webhooks.sent) == 1


def test_deliveries_beyond_the_per_host_cap_wait_in_rabbitmq(storage):
    webhooks = Recorded(Attempt(True, "HTTP 204"), max_per_host=1)
    assert webhooks.slots.acquire("h.example")  # one delivery to h.example under way
    decision = webhooks.handle({"id": storage.image_id}, storage)
    assert decision.outcome == "deferred" and webhooks.sent == []
    assert webhooks.published == [("webhooks.deliveries.retry.1s", {"id": storage.image_id})]
    webhooks.slots.release("h.example")
    assert webhooks.handle({"id": storage.image_id}, storage).outcome == "delivered"
    assert webhooks.slots.busy == {}


@pytest.mark.parametrize("error, published", [(NotFound("gone"), []), (Unavailable("down"), ["webhooks.deliveries.retry.1s"])])
def test_storage_trouble_is_retried_and_unknown_images_dropped(error, published):
    webhooks = Recorded(Attempt(True, ""))
    webhooks.handle({"id": "ab" * 16}, Unreachable(error))
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
