"""What hostile files cost the gateway's probe, with and without the decoder work caps.

``python -m bench.decode_caps``: each hostile file (``harness.hostile``, about
upload-sized) is probed as the gateway does (``imagepipe.rendering.probe``),
best of 5, with the default caps (refused) and with the caps lifted (what
Pillow's header parsers alone cost); then the render pool's answer to the
2,500-scan JPEG with its scan cap lifted: stopped at the budget for its
pixels instead of running for RENDER_TIMEOUT.  Also the start-up time of a
render worker with and without its sandbox.  Numbers go to bench/EXPERIMENTS.md.
"""
import io
import time

from PIL import Image

from harness.hostile import (
    gif_of, make_progressive_jpeg, png_chunk, repeat_last_scan, with_jpeg_comments, with_png_chunks)
from imagepipe.errors import PipelineError
from imagepipe.rendering.pool import RenderPool
from imagepipe.rendering.presets import Preset
from imagepipe.rendering.probe import probe
from imagepipe.rendering.structure import DecodeLimits

LIFTED = DecodeLimits(jpeg_max_scans=10**9, jpeg_max_segments=10**9, png_max_chunks=10**9,
                      gif_max_blocks=10**9)


def _small(fmt):
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(out, fmt)
    return out.getvalue()


def hostile_files():
    return {
        "jpeg 7000x7000, last scan x2500": repeat_last_scan(make_progressive_jpeg(7000, 7000), 2500),
        "jpeg 64x64 + 6.5M empty COM segments": with_jpeg_comments(_small("JPEG"), 6_500_000),
        "png 64x64 + 2.1M empty chunks": with_png_chunks(_small("PNG"), png_chunk(b"teXt"), 2_100_000),
        "gif 1x1 + 12M 1-byte comment sub-blocks": gif_of(1, sub_blocks_per_comment=12_000_000),
        "gif 1000 frames (the frame cap)": gif_of(1000),
    }


def best_probe(data, limits, runs=5):
    timings, verdict = [], None
    for _ in range(runs):
        started = time.perf_counter()
        try:
            info = probe(data, limits=limits)
            verdict = "accepted {}x{}x{}".format(info.width, info.height, info.frames)
        except PipelineError as exc:
            verdict = "{}: {}".format(exc.code, exc.message)
        timings.append(time.perf_counter() - started)
    return min(timings), verdict


def budget_cut(data):
    pool = RenderPool(size=1, timeout=60, seconds_per_megapixel=0.25, seconds_min=5,
                      decode_limits=LIFTED)
    try:
        pool.start_worker()
        started = time.perf_counter()
        try:
            pool.render(data, [Preset("thumb", 256, 256)])
            verdict = "rendered"
        except PipelineError as exc:
            verdict = exc.message
        return time.perf_counter() - started, verdict
    finally:
        pool.close()


def worker_start(sandbox, runs=3):
    timings = []
    for _ in range(runs):
        pool = RenderPool(size=1, sandbox=sandbox)
        started = time.perf_counter()
        report = pool.start_worker()
        timings.append(time.perf_counter() - started)
        pool.close()
    return min(timings), report


def main():
    probe(_small("PNG"))  # Pillow's plugins registered before any timing
    print("| file | bytes | probe, caps on | verdict | probe, caps lifted | verdict |")
    print("|---|---:|---:|---|---:|---|")
    files = hostile_files()
    for name, data in files.items():
        capped, capped_verdict = best_probe(data, DecodeLimits())
        lifted, lifted_verdict = best_probe(data, LIFTED, runs=1)
        print("| {} | {:,} | {:.1f} ms | {} | {:.0f} ms | {} |".format(
            name, len(data), capped * 1000, capped_verdict, lifted * 1000, lifted_verdict))
    seconds, verdict = budget_cut(files["jpeg 7000x7000, last scan x2500"])
    print("\nrender of the 2,500-scan JPEG with its scan cap lifted (0.25 s/MP, 5..60 s): "
          "{:.1f} s, {}".format(seconds, verdict))
    for sandbox in ("off", "auto"):
        seconds, report = worker_start(sandbox)
        print("render worker start-up, RENDER_SANDBOX={}: {:.0f} ms ({})".format(
            sandbox, seconds * 1000, report.as_dict()))


if __name__ == "__main__":
    main()
