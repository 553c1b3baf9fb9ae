"""RenderPool: real worker processes, real Pillow, real limits."""
import os
import signal
import threading

import pytest

from imagepipe.errors import InvalidImage, TooManyPixels, UnsupportedFormat
from imagepipe.rendering.presets import Preset
from imagepipe.rendering.pool import RenderPool
from tests.helpers import make_jpeg

PRESETS = [Preset("thumb", 256, 256), Preset("medium", 1024, 1024)]


@pytest.fixture
def pool():
    pool = RenderPool(size=1, timeout=30)
    yield pool
    pool.close()


def worker_pids(pool):
    return {worker.process.pid for worker in pool._workers}


def test_renders_in_a_worker_process(pool):
    renditions = pool.render(make_jpeg(2000, 1000), PRESETS)
    assert [(r.preset, r.width, r.height) for r in renditions] == [
        ("thumb", 256, 128), ("medium", 1024, 512)]
    assert worker_pids(pool) and os.getpid() not in worker_pids(pool)


def test_image_errors_come_back_as_themselves_and_the_worker_stays(pool):
    pool.render(make_jpeg(100, 100), PRESETS)
    pids = worker_pids(pool)
    with pytest.raises(UnsupportedFormat):
        pool.render(b"not an image at all", PRESETS)
    with pytest.raises(InvalidImage):
        pool.render(make_jpeg(800, 600)[:2000], PRESETS)
    assert worker_pids(pool) == pids


def test_a_runaway_render_is_stopped_and_the_worker_replaced():
    pool = RenderPool(size=1, timeout=0.05)
    try:
        with pytest.raises(InvalidImage, match="gave up after"):
            pool.render(make_jpeg(6000, 4000), PRESETS)
        pool.timeout = 30
        assert pool.render(make_jpeg(64, 64), PRESETS)[0].width == 64
    finally:
        pool.close()


def test_a_render_over_the_memory_limit_fails_the_image_only():
    pool = RenderPool(size=1, timeout=30, memory_limit_mb=20)
    try:
        with pytest.raises(TooManyPixels, match="more than 20 MB"):
            pool.render(make_jpeg(6000, 4000), [Preset("big", 6000, 6000, format="png")])
        assert pool.render(make_jpeg(64, 64), PRESETS)[0].width == 64
    finally:
        pool.close()


def test_a_crashing_worker_fails_the_job_and_is_replaced(pool):
    pool.render(make_jpeg(64, 64), PRESETS)
    (pid,) = worker_pids(pool)
    slow_job = make_jpeg(6000, 4000)  # a lossless 24 MP encode takes seconds
    # kill the worker while it works, as a segfaulting decoder would die
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGSEGV))
    killer.start()
    with pytest.raises(InvalidImage, match="SIGSEGV"):
        pool.render(slow_job, [Preset("big", 6000, 6000, format="png")])
    killer.join()
    assert pool.render(make_jpeg(64, 64), PRESETS)[0].width == 64
    assert worker_pids(pool) != {pid}


def test_two_jobs_at_once_use_two_workers():
    pool = RenderPool(size=2, timeout=30)
    data = make_jpeg(4000, 3000)
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(pool.render(data, PRESETS)))
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 2
        assert len(pool._workers) == 2
    finally:
        pool.close()


def test_workers_run_at_the_configured_niceness():
    pool = RenderPool(size=1, timeout=30, nice=7)
    try:
        pool.render(make_jpeg(32, 32), PRESETS)
        (pid,) = worker_pids(pool)
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
    finally:
        pool.close()


def test_workers_started_ahead_are_the_ones_that_render():
    pool = RenderPool(size=2, timeout=30)
    try:
        pool.start_workers(5)  # no more than the pool's size
        started = worker_pids(pool)
        assert len(started) == 2
        pool.render(make_jpeg(300, 200), PRESETS)
        pool.start_workers(1)  # already running: nothing new
        assert worker_pids(pool) == started
    finally:
        pool.close()
