"""GET /images/<id>/events over real HTTP, with the real services and broker.

Most tests start gateway + storage first and imaging later (or never), so the
image is reliably unfinished while the stream opens.
"""
import json
import time

import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.utils import get_container, get_extension

from services.gateway import GatewayService
from services.imaging import ImagingService
from services.extensions.live import LiveStatus
from services.storage import StorageService
from tests.helpers import make_jpeg, upload, wait_for_status, wait_until

KEY = "sse-test-key"


class EventReader:
    """Reads a text/event-stream response: events and keep-alive comments."""

    def __init__(self, response):
        self.response = response
        self._chunks = response.iter_content(chunk_size=None)
        self._buffer = b""
        self.keepalives = 0

    def next_event(self):
        """The next ``(event name, decoded data)``, or None when the server closed."""
        while True:
            while b"\n\n" not in self._buffer:
                chunk = next(self._chunks, None)
                if chunk is None:
                    assert self._buffer == b"", self._buffer
                    return None
                self._buffer += chunk
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            lines = block.decode().split("\n")
            if all(line.startswith(":") for line in lines):
                self.keepalives += 1
                continue
            fields = dict(line.split(": ", 1) for line in lines)
            assert set(fields) == {"event", "data"}, fields
            return fields["event"], json.loads(fields["data"])

    def remaining_events(self):
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events


def open_events(web, image_id, **kwargs):
    response = web.get("/images/{}/events".format(image_id), stream=True, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    return EventReader(response)


@pytest.fixture
def start_front(runner_factory, pipeline_config):
    """gateway + storage only: uploads stay pending until imaging starts."""
    def start(**config_overrides):
        pipeline_config.update(config_overrides)
        runner = runner_factory(pipeline_config, GatewayService, StorageService)
        runner.start()
        return runner
    return start


@pytest.fixture
def front(start_front):
    return start_front()


def start_imaging(runner_factory, pipeline_config):
    runner = runner_factory(pipeline_config, ImagingService)
    runner.start()
    return runner


def live_watchers(runner):
    return get_extension(get_container(runner, GatewayService), LiveStatus).watchers


def test_stream_opens_with_the_current_status_then_sends_done_and_closes(
        start_front, web, runner_factory, pipeline_config):
    # the first re-read comes after 120 s: "done" sooner can only be the
    # image_processed event's doing
    front = start_front(LIVE_RECHECK_INTERVAL=120)
    image_id = upload(web, make_jpeg(1600, 1200))
    events = open_events(web, image_id)

    name, first = events.next_event()
    assert name == "status"
    assert first == web.get("/images/" + image_id).json()
    assert first["status"] == "pending" and first["variants"] == {}

    start_imaging(runner_factory, pipeline_config)
    started = time.monotonic()
    rest = events.remaining_events()
    assert time.monotonic() - started < 120
    assert [name for name, _ in rest] == ["status"] * len(rest)
    last = rest[-1][1]
    assert last["status"] == "done"
    assert set(last["variants"]) == {"thumb", "medium"}
    assert last == web.get("/images/" + image_id).json()
    assert events.keepalives == 0
    wait_until(lambda: len(live_watchers(front)) == 0, message="stream released")


def test_an_already_finished_image_gives_one_event_and_closes(pipeline, web):
    image_id = upload(web, make_jpeg(300, 200))
    done = wait_for_status(web, image_id)
    reader = open_events(web, image_id)
    assert reader.remaining_events() == [("status", done)]
    assert reader.keepalives == 0  # closed at once, not kept open until a re-read


def test_a_failed_image_ends_the_stream_with_its_error(pipeline, web):
    truncated = make_jpeg(800, 600)[:2000]  # header fine, pixel data cut short
    image_id = upload(web, truncated)
    events = open_events(web, image_id).remaining_events()
    name, last = events[-1]
    assert last["status"] == "failed" and last["error"]
    assert all(body["status"] != "done" for _, body in events)


@pytest.mark.parametrize("image_id", ["0123456789abcdef0123456789abcdef", "not-an-id"])
def test_unknown_image_is_404_json_before_any_streaming(pipeline, web, image_id):
    response = web.get("/images/{}/events".format(image_id))
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_found"
    assert len(live_watchers(pipeline)) == 0


def test_a_missed_event_only_delays_the_update(start_front, web, pipeline_config):
    """No imaging runs and no event is sent: the periodic re-read finds the change.

    Without it the stream would end at its maximum lifetime, still pending."""
    start_front(LIVE_RECHECK_INTERVAL=0.5, LIVE_MAX_SECONDS=60)
    image_id = upload(web, make_jpeg(200, 200, color=(5, 5, 5)))
    events = open_events(web, image_id)
    assert events.next_event()[1]["status"] == "pending"

    with ClusterRpcProxy(pipeline_config, timeout=10) as rpc:
        rpc.storage.claim(image_id)
        rpc.storage.finish(image_id, "failed", "marked failed by the test")
    rest = events.remaining_events()
    assert rest[-1][1]["status"] == "failed"
    assert rest[-1][1]["error"] == "marked failed by the test"


def test_keepalives_flow_and_the_stream_ends_at_its_maximum_lifetime(start_front, web):
    front = start_front(LIVE_RECHECK_INTERVAL=0.3, LIVE_MAX_SECONDS=1.5)
    image_id = upload(web, make_jpeg(200, 200, color=(6, 6, 6)))
    started = time.monotonic()
    events = open_events(web, image_id)
    assert [body["status"] for _, body in events.remaining_events()] == ["pending"]
    assert time.monotonic() - started > 1.4  # not before its lifetime (1.5 s)
    assert events.keepalives >= 3
    wait_until(lambda: len(live_watchers(front)) == 0, message="stream released")


def test_a_client_that_disconnects_leaves_nothing_behind(start_front, web):
    front = start_front(LIVE_RECHECK_INTERVAL=0.3)
    watchers = live_watchers(front)
    image_id = upload(web, make_jpeg(200, 200, color=(7, 7, 7)))
    readers = [open_events(web, image_id) for _ in range(5)]
    for reader in readers:
        assert reader.next_event()[1]["status"] == "pending"
    assert len(watchers) == 5

    for reader in readers:
        reader.response.close()
    # the next keep-alive write fails and the server closes each stream
    wait_until(lambda: len(watchers) == 0, timeout=10, message="all watches released")
    assert web.get("/images/" + image_id).status_code == 200


def test_open_streams_hold_no_worker(start_front, web):
    """Streams are iterated after the HTTP worker returned: more streams than
    workers still leave the gateway answering."""
    front = start_front(max_workers=2)
    image_id = upload(web, make_jpeg(200, 200, color=(8, 8, 8)))
    readers = [open_events(web, image_id) for _ in range(6)]
    for reader in readers:
        assert reader.next_event()[1]["status"] == "pending"
    assert web.get("/images/" + image_id).status_code == 200
    assert get_container(front, GatewayService)._worker_threads == {}
    for reader in readers:
        reader.response.close()


def test_shutdown_ends_open_streams_promptly(start_front, web, pipeline_config):
    front = start_front(LIVE_MAX_SECONDS=120)
    image_id = upload(web, make_jpeg(200, 200, color=(9, 9, 9)))
    readers = [open_events(web, image_id) for _ in range(3)]
    for reader in readers:
        assert reader.next_event()[1]["status"] == "pending"

    started = time.monotonic()
    front.stop()
    # stopping did not wait for the streams to reach their maximum lifetime
    assert time.monotonic() - started < pipeline_config["LIVE_MAX_SECONDS"]
    for reader in readers:
        # each stream ends cleanly (no exception mid-chunk) after its one event
        assert reader.remaining_events() == []


def test_with_api_keys_the_stream_needs_a_key(runner_factory, pipeline_config, web):
    pipeline_config["API_KEYS"] = KEY
    runner_factory(pipeline_config, GatewayService, StorageService, ImagingService).start()
    auth = {"Authorization": "Bearer " + KEY}
    image_id = upload(web, make_jpeg(200, 100), headers=auth)

    refused = web.get("/images/{}/events".format(image_id))
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    refused = web.get("/images/{}/events?access_token={}".format(image_id, KEY))
    assert refused.status_code == 401  # keys travel in the header only

    events = open_events(web, image_id, headers=auth).remaining_events()
    assert events[-1][1]["status"] == "done"


def test_the_gateway_subscription_is_a_per_process_auto_delete_queue(
        front, rabbit_manager, rabbit_config):
    """The image_processed subscription must not pile up events for a gateway that is gone."""
    queues = rabbit_manager.get_queues(rabbit_config["vhost"])
    # the live-status broadcast subscription (the webhook delivery queue beside
    # it, webhooks.deliveries, is durable on purpose)
    subscriptions = [queue for queue in queues if "--gateway.image_processed-" in queue["name"]]
    assert len(subscriptions) == 1, [queue["name"] for queue in queues]
    assert subscriptions[0]["auto_delete"] is True
    assert subscriptions[0]["durable"] is False
