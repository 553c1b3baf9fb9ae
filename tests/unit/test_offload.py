"""Slow file calls leave the eventlet hub: they run in real threads, and the rest keeps running."""
import os
import tempfile
import time

import eventlet
from eventlet import patcher

from imagepipe.storage.blobs.files import FileBlobStore
from services.extensions.offload import FILE_STORE_CALLS, Offloaded

real_thread_id = patcher.original("threading").get_ident


class Recorder:
    def slow(self):
        return real_thread_id()

    def quick(self):
        return real_thread_id()

    size = 7


def test_named_calls_run_in_another_os_thread_and_the_rest_pass_through():
    wrapped = Offloaded(Recorder(), ["slow"])
    assert wrapped.slow() != real_thread_id()
    assert wrapped.quick() == real_thread_id()
    assert wrapped.size == 7


def test_green_threads_run_while_a_blocking_call_waits():
    blocking = Offloaded(patcher.original("time"), ["sleep"])
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append(time.monotonic())
            eventlet.sleep(0.01)

    green = eventlet.spawn(ticker)
    started = time.monotonic()
    blocking.sleep(0.3)  # a real, hub-blocking sleep, as an fsync on a slow disk
    ended = time.monotonic()
    green.wait()
    assert len([tick for tick in ticks if started <= tick <= ended]) == 5


def test_a_file_store_works_through_the_thread_pool():
    with tempfile.TemporaryDirectory() as root:
        store = Offloaded(FileBlobStore(root), FILE_STORE_CALLS)
        store.put("staging/a", b"bytes")
        assert store.digest("staging/a")[0] == 5
        store.promote("staging/a", "originals/ab/a", "image/png", None, 5)
        assert store.get("originals/ab/a") == b"bytes"
        assert not os.path.exists(os.path.join(root, "staging", "a"))
