"""imagepipe.live: the watcher registry and the SSE stream of one image."""
import json
import threading
import time

import pytest

from imagepipe.errors import Unavailable
from imagepipe.web.live import KEEPALIVE, StatusStream, StatusWatchers, encode_event

IMAGE = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def status(state, **extra):
    return dict({"id": IMAGE, "status": state, "updated_at": "t0"}, **extra)


def parse(chunk):
    """An SSE event block -> (event name, decoded data)."""
    text = chunk.decode()
    assert text.endswith("\n\n"), text
    fields = dict(line.split(": ", 1) for line in text.strip("\n").split("\n"))
    return fields["event"], json.loads(fields["data"])


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class ScriptedWatch:
    """A watch whose waits return scripted results and advance a fake clock."""

    def __init__(self, clock, results, watchers=None):
        self.clock = clock
        self.results = list(results)
        self.waits = []
        self.closed_calls = 0
        self.watchers = StatusWatchers() if watchers is None else watchers

    @property
    def closed(self):
        return self.watchers.closed

    def wait(self, timeout):
        self.waits.append(timeout)
        woken = self.results.pop(0) if self.results else False
        self.clock.now += 0.01 if woken else timeout
        return woken

    def close(self):
        self.closed_calls += 1


# --- the registry -------------------------------------------------------------

def test_notify_wakes_only_the_watches_of_that_image():
    watchers = StatusWatchers()
    first, second, other = watchers.watch(IMAGE), watchers.watch(IMAGE), watchers.watch(OTHER)
    assert len(watchers) == 3

    assert watchers.notify(IMAGE) == 2
    assert first.wait(0) and second.wait(0)
    assert not other.wait(0)
    # a wake is consumed by the wait that saw it
    assert not first.wait(0)


def test_notify_before_the_wait_is_not_lost():
    watchers = StatusWatchers()
    watch = watchers.watch(IMAGE)
    watchers.notify(IMAGE)
    started = time.monotonic()
    assert watch.wait(5)
    assert time.monotonic() - started < 1


def test_notify_wakes_a_waiting_thread():
    watchers = StatusWatchers()
    watch = watchers.watch(IMAGE)
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(watch.wait(10)))
    waiter.start()
    time.sleep(0.05)
    started = time.monotonic()
    watchers.notify(IMAGE)
    waiter.join(5)
    assert outcome == [True]
    assert time.monotonic() - started < 1


def test_wait_times_out_without_notify():
    watch = StatusWatchers().watch(IMAGE)
    started = time.monotonic()
    assert watch.wait(0.05) is False
    assert time.monotonic() - started >= 0.05


def test_closed_watches_leave_the_registry():
    watchers = StatusWatchers()
    with watchers.watch(IMAGE):
        kept = watchers.watch(IMAGE)
        assert len(watchers) == 2
    assert len(watchers) == 1
    kept.close()
    kept.close()  # twice is harmless
    assert len(watchers) == 0
    assert watchers.notify(IMAGE) == 0


def test_close_wakes_everybody_and_later_watches_start_closed():
    watchers = StatusWatchers()
    watches = [watchers.watch(IMAGE), watchers.watch(OTHER)]
    watchers.close()
    assert all(watch.closed and watch.wait(0) for watch in watches)
    late = watchers.watch(IMAGE)
    assert late.closed and late.wait(0)


def test_wait_until_empty():
    watchers = StatusWatchers()
    watch = watchers.watch(IMAGE)
    assert watchers.wait_until_empty(0.05) is False
    threading.Timer(0.05, watch.close).start()
    assert watchers.wait_until_empty(5) is True


def test_many_threads_watching_and_notifying_leave_nothing_behind():
    watchers = StatusWatchers()
    woken = []

    def stream(index):
        with watchers.watch(IMAGE if index % 2 else OTHER) as watch:
            woken.append(watch.wait(5))

    threads = [threading.Thread(target=stream, args=(index,)) for index in range(40)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while len(watchers) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watchers.notify(IMAGE) == 20 and watchers.notify(OTHER) == 20
    for thread in threads:
        thread.join(5)
    assert woken == [True] * 40
    assert len(watchers) == 0


# --- the stream ---------------------------------------------------------------

def test_event_format():
    chunk = encode_event({"id": IMAGE, "status": "done"})
    assert chunk == b'event: status\ndata: {"id":"0123456789abcdef0123456789abcdef","status":"done"}\n\n'


@pytest.mark.parametrize("state", ["done", "failed"])
def test_a_finished_image_gives_one_event_and_ends(state):
    clock = FakeClock()
    watch = ScriptedWatch(clock, [])
    reads = []
    stream = StatusStream(watch, status(state), lambda: reads.append(1), 15, 300, clock)
    chunks = list(stream)
    assert [parse(chunk) for chunk in chunks] == [("status", status(state))]
    assert reads == [] and watch.waits == []
    assert watch.closed_calls == 1


def test_events_on_change_keepalive_when_idle_and_end_when_done():
    clock = FakeClock()
    # woken, timed out, woken (no change: spurious), woken
    watch = ScriptedWatch(clock, [True, False, True, True])
    statuses = iter([
        status("processing", updated_at="t1"),
        status("processing", updated_at="t1"),
        status("processing", updated_at="t1"),
        status("done", updated_at="t2", variants={"thumb": {}}),
    ])
    chunks = list(StatusStream(watch, status("pending"), lambda: next(statuses), 15, 300, clock))
    assert chunks[1:3] == [encode_event(status("processing", updated_at="t1")), KEEPALIVE]
    assert [parse(chunk)[1]["status"] for chunk in chunks if chunk != KEEPALIVE] == [
        "pending", "processing", "done"]
    assert chunks.count(KEEPALIVE) == 1
    assert watch.waits == [15, 15, 15, 15]
    assert watch.closed_calls == 1


def test_the_stream_ends_at_its_maximum_lifetime():
    clock = FakeClock()
    watch = ScriptedWatch(clock, [])
    reads = []

    def read_status():
        reads.append(clock.now)
        return status("pending")

    chunks = list(StatusStream(watch, status("pending"), read_status, 15, 40, clock))
    assert watch.waits == [15, 15, 10]  # the last wait stops at the deadline
    assert len(reads) == 3
    assert chunks == [encode_event(status("pending"))] + [KEEPALIVE] * 3
    assert watch.closed_calls == 1


def test_the_stream_ends_when_the_watchers_close():
    clock = FakeClock()
    watchers = StatusWatchers()
    watch = ScriptedWatch(clock, [True], watchers)
    stream = iter(StatusStream(watch, status("pending"), lambda: status("pending"), 15, 300, clock))
    assert parse(next(stream))[1]["status"] == "pending"
    watchers.close()
    assert list(stream) == []
    assert watch.closed_calls == 1


def test_storage_unavailable_only_delays():
    clock = FakeClock()
    watch = ScriptedWatch(clock, [True, False, True])
    answers = iter([Unavailable("storage is away"), Unavailable("still away"), status("done")])

    def read_status():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    chunks = list(StatusStream(watch, status("pending"), read_status, 15, 300, clock))
    assert chunks == [encode_event(status("pending")), KEEPALIVE, encode_event(status("done"))]


def test_closing_a_stream_that_never_started_releases_its_watch():
    watchers = StatusWatchers()
    stream = StatusStream(watchers.watch(IMAGE), status("pending"), lambda: status("pending"), 15, 300)
    assert len(watchers) == 1
    stream.close()
    assert len(watchers) == 0


def test_closing_a_stream_mid_way_releases_its_watch():
    watchers = StatusWatchers()
    stream = StatusStream(watchers.watch(IMAGE), status("pending"), lambda: status("pending"), 0.01, 300)
    events = iter(stream)
    next(events)
    next(events)  # a keep-alive: the stream is waiting in its loop
    assert len(watchers) == 1
    stream.close()  # what the WSGI server does when the client has gone
    assert len(watchers) == 0
