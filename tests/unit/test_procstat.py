"""harness.procstat: finding render workers and sampling their peak memory."""
import os

from harness.procstat import PeakMemory, render_workers
from imagepipe.rendering.pool import RenderPool
from imagepipe.rendering.presets import Preset
from tests.helpers import make_jpeg


def test_peak_memory_of_the_render_workers_of_this_process():
    pool = RenderPool(size=1, timeout=30)
    try:
        with PeakMemory(lambda: render_workers(os.getpid())) as workers:
            pool.render(make_jpeg(3000, 2000), [Preset("big", 3000, 3000, format="png")])
        (pid,) = {worker.process.pid for worker in pool._workers}
        assert set(workers.mb) == {pid}
        # the decoded 6 MP RGB image alone is 17 MB
        assert workers.mb[pid] > 3000 * 2000 * 3 / 2 ** 20
    finally:
        pool.close()
    assert render_workers(os.getpid()) == []
