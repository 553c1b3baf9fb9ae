"""RenderPool: real worker processes, real Pillow, real limits."""
import os
import signal
import threading

import pytest

from imagepipe.errors import ImageTooComplex, InvalidImage, TooManyPixels, UnsupportedFormat
from imagepipe.rendering.presets import Preset
from imagepipe.rendering.pool import RenderPool
from imagepipe.rendering.structure import DecodeLimits
from tests.helpers import make_jpeg, make_progressive_jpeg, repeat_last_scan, wait_until

PRESETS = [Preset("thumb", 256, 256), Preset("medium", 1024, 1024)]


@pytest.fixture
def pool():
    pool = RenderPool(size=1, timeout=30)
    yield pool
    pool.close()


def worker_pids(pool):
    return {worker.process.pid for worker in pool._workers}


def bytes_read(pid):
    """Bytes the process has read so far (/proc/<pid>/io: its socket reads included)."""
    with open("/proc/{}/io".format(pid)) as io_counters:
        return next(int(line.split()[1]) for line in io_counters if line.startswith("rchar:"))


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
    before = bytes_read(pid)
    outcome = []

    def render():
        try:
            outcome.append(pool.render(slow_job, [Preset("big", 6000, 6000, format="png")]))
        except InvalidImage as exc:
            outcome.append(exc)

    job = threading.Thread(target=render)
    job.start()
    # once the worker has read the whole job it is working on it: kill it
    # then, as a segfaulting decoder would die
    wait_until(lambda: bytes_read(pid) - before >= len(slow_job), message="the worker reading the job")
    os.kill(pid, signal.SIGSEGV)
    job.join()
    assert isinstance(outcome[0], InvalidImage) and "SIGSEGV" in str(outcome[0]), outcome
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


def test_a_render_gets_a_budget_by_its_pixels_not_the_whole_timeout():
    # 49 MP whose one scan is repeated 2,500 times: ~80 s of decoding. With
    # the scan cap lifted, the budget (49 MP x 0.05 s) stops it, not the 60 s.
    hostile = repeat_last_scan(make_progressive_jpeg(7000, 7000), 2500)
    pool = RenderPool(size=1, timeout=60, seconds_per_megapixel=0.05, seconds_min=1,
                      decode_limits=DecodeLimits(jpeg_max_scans=10_000, jpeg_max_segments=10_000))
    try:
        with pytest.raises(InvalidImage, match=r"gave up after 2\.45 s"):
            pool.render(hostile, PRESETS)
        assert pool.render(make_jpeg(64, 64), PRESETS)[0].width == 64
    finally:
        pool.close()


def test_the_worker_refuses_what_the_decode_limits_refuse(pool):
    hostile = repeat_last_scan(make_progressive_jpeg(256, 256), 200)
    with pytest.raises(ImageTooComplex, match="more than 100 scans"):
        pool.render(hostile, PRESETS)
