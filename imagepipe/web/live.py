"""Live image status: who waits for which image, and the event stream they read.

The gateway keeps one ``StatusWatchers`` per process.  Its broadcast
subscription to ``image_processed`` calls :meth:`StatusWatchers.notify`;
each open ``GET /images/<id>/events`` stream holds a :class:`Watch` and waits
on it between reads.  An event only wakes a stream early: every stream also
re-reads the status each ``recheck_interval`` seconds, so a lost event (the
subscription is not durable) only delays an update, never loses it.

Plain ``threading`` primitives: under eventlet's monkey patching (``nameko
run``, ``nameko test``) they are green, so a waiting stream costs a greenlet,
not a thread.
"""
import json
import threading
import time

from imagepipe.errors import ImageNotFound, Unavailable
from imagepipe.records import FINISHED

EVENT_NAME = "status"
KEEPALIVE = b": keep-alive\n\n"


class Watch:
    """One stream's interest in one image; wakes on ``notify`` or ``close``."""

    def __init__(self, watchers, image_id):
        self.image_id = image_id
        self._watchers = watchers
        self._woken = threading.Event()

    def wake(self):
        self._woken.set()

    def wait(self, timeout):
        """Block until woken or ``timeout`` seconds pass; True if woken."""
        woken = self._woken.wait(timeout)
        # cleared before the caller re-reads the status, so a notify that
        # arrives during the read wakes the next wait instead of being lost
        self._woken.clear()
        return woken

    @property
    def closed(self):
        return self._watchers.closed

    def close(self):
        self._watchers.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StatusWatchers:
    """The registry of open watches, keyed by image id."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watches = {}
        self.closed = False

    def watch(self, image_id):
        watch = Watch(self, image_id)
        with self._lock:
            self._watches.setdefault(image_id, set()).add(watch)
        if self.closed:
            watch.wake()
        return watch

    def discard(self, watch):
        with self._lock:
            watches = self._watches.get(watch.image_id)
            if watches is None:
                return
            watches.discard(watch)
            if not watches:
                del self._watches[watch.image_id]

    def notify(self, image_id):
        """Wake every watch of ``image_id``; return how many were woken."""
        with self._lock:
            watches = list(self._watches.get(image_id, ()))
        for watch in watches:
            watch.wake()
        return len(watches)

    def close(self):
        """Shutting down: wake every watch; their streams end."""
        self.closed = True
        with self._lock:
            watches = [watch for group in self._watches.values() for watch in group]
        for watch in watches:
            watch.wake()

    def wait_until_empty(self, timeout, poll=0.02):
        """Give closed streams a moment to finish their last write."""
        deadline = time.monotonic() + timeout
        while len(self) and time.monotonic() < deadline:
            time.sleep(poll)
        return len(self) == 0

    def __len__(self):
        with self._lock:
            return sum(len(group) for group in self._watches.values())


def encode_event(status):
    """One server-sent event carrying a status body."""
    return "event: {}\ndata: {}\n\n".format(
        EVENT_NAME, json.dumps(status, separators=(",", ":"))).encode()


class StatusStream:
    """The SSE body of one image: its status now, then every change.

    Iterating yields bytes.  It ends after a terminal status, when the
    image is deleted, when the watchers close (shutdown), or after
    ``max_seconds`` (no connection lives for ever; clients reconnect).  Between reads it waits for a notify, at
    most ``recheck_interval`` seconds; a wait that times out re-reads anyway
    and, if nothing changed, sends a keep-alive comment -- which is also how a
    vanished client is noticed: the write fails and the server closes us.

    ``close()`` releases the watch even if iteration never started (a
    generator's ``finally`` would not run then, and the watch would leak).
    """

    def __init__(self, watch, first_status, read_status, recheck_interval, max_seconds,
                 clock=time.monotonic):
        self._watch = watch
        self._events = self._generate(first_status, read_status, recheck_interval,
                                      clock() + max_seconds, clock)

    def __iter__(self):
        return self._events

    def close(self):
        self._events.close()
        self._watch.close()

    def _generate(self, first_status, read_status, recheck_interval, deadline, clock):
        watch = self._watch
        try:
            last = first_status
            yield encode_event(first_status)
            while last["status"] not in FINISHED:
                remaining = deadline - clock()
                if remaining <= 0 or watch.closed:
                    return
                woken = watch.wait(min(recheck_interval, remaining))
                if watch.closed:
                    return
                try:
                    status = read_status()
                except Unavailable:
                    status = last  # storage is away for now; try again later
                except ImageNotFound:
                    return  # deleted: nothing more will happen to it
                if status != last:
                    last = status
                    yield encode_event(status)
                elif not woken:
                    yield KEEPALIVE
        finally:
            watch.close()
