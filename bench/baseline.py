"""The two in-process baselines, on the same images and presets.

* naive: what a plain Pillow script does -- decode the whole image (no JPEG
  draft), then ``thumbnail(LANCZOS)`` a copy per preset from the full-size
  image, save WebP;
* fast ("the limit"): ``imagepipe.rendering.render.render`` -- JPEG draft, one decode,
  chained resizes -- the exact code the imaging service runs.

Both run in two worker processes (``multiprocessing``, spawn), one per core,
with no broker, HTTP, storage or serialization in the way.
"""
import io
import multiprocessing
import os
import time
from dataclasses import dataclass

from PIL import Image

from bench.config import presets as configured_presets
from harness.procstat import memory_mb
from imagepipe.rendering.render import render

ROUTES = ("naive", "fast")


def render_naive(data, presets):
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # full decode: a loaded image ignores draft()
        full = image.convert("RGB")
    outputs = []
    for preset in presets:
        copy = full.copy()
        copy.thumbnail((preset.width, preset.height), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        copy.save(out, "WEBP", quality=preset.quality, method=4)
        outputs.append(out.getvalue())
    return outputs


def render_fast(data, presets):
    return [rendition.data for rendition in render(data, presets)]


_RENDERERS = {"naive": render_naive, "fast": render_fast}


def _job(args):
    """One image in a worker: returns (wall seconds, cpu seconds, output bytes)."""
    route, path, presets = args
    with open(path, "rb") as source:
        data = source.read()
    wall, cpu = time.perf_counter(), time.process_time()
    outputs = _RENDERERS[route](data, presets)
    return time.perf_counter() - wall, time.process_time() - cpu, sum(map(len, outputs))


def _warm(presets):
    from bench.images import tiny_jpeg
    render_fast(tiny_jpeg("warm"), presets)
    render_naive(tiny_jpeg("warm"), presets)
    return True


@dataclass
class BaselineResult:
    route: str
    images: int
    seconds: float
    cpu_per_image: float      # CPU seconds per image inside the render call
    wall_per_image: float     # mean time of one render call

    @property
    def throughput(self):
        return self.images / self.seconds


def run_baseline(route, paths, processes=2):
    """Render every image once with ``processes`` workers; time the whole batch."""
    presets = configured_presets()
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        pool.map(_warm, [presets] * processes)  # imports and first-call costs outside the clock
        started = time.perf_counter()
        results = pool.map(_job, [(route, str(path), presets) for path in paths], chunksize=1)
        seconds = time.perf_counter() - started
    return BaselineResult(
        route=route, images=len(paths), seconds=seconds,
        cpu_per_image=sum(r[1] for r in results) / len(results),
        wall_per_image=sum(r[0] for r in results) / len(results))


def _peak_rss_job(args):
    route, path, presets = args
    with open(path, "rb") as source:
        data = source.read()
    # VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss across fork+exec
    before = memory_mb(os.getpid(), "VmHWM")
    _RENDERERS[route](data, presets)
    return before, memory_mb(os.getpid(), "VmHWM")


def peak_rss_render(path, route="fast"):
    """(RSS before, peak RSS) in MB of a fresh process rendering one file."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_peak_rss_job, ((route, str(path), configured_presets()),))
