"""Slow file calls in real threads, so one upload's fsync or hash does not stall a process.

eventlet runs every green thread of a service on one OS thread: an
``os.fsync`` (milliseconds on a real disk) or the SHA-256 of an image-sized
file holds up every other request, RPC reply and heartbeat of the process
while it lasts, and a burst of uploads queues behind each one in turn.
``eventlet.tpool`` runs such a call in a real thread while the hub goes on;
the kernel's waits hold no GIL, and hashlib lets go of it.

Only calls on local files qualify: they touch nothing green.  An S3 store's
calls go through eventlet's green sockets and must stay on the hub, so they
are never wrapped.
"""
import functools

from eventlet import tpool


class Offloaded:
    """``target`` with the methods named in ``calls`` run in eventlet's thread pool."""

    def __init__(self, target, calls):
        self._target, self._calls = target, frozenset(calls)

    def __getattr__(self, name):
        attribute = getattr(self._target, name)
        if name in self._calls:
            return functools.partial(tpool.execute, attribute)
        return attribute


# what storage's local folder does on an upload's and a job's way: write,
# hash back, rename into place (each with its fsyncs), read whole
FILE_STORE_CALLS = ("put", "get", "digest", "promote")
# what the gateway and imaging do under grants: write and hash (fsynced), read whole
DIRECT_FILE_CALLS = ("write", "read")
