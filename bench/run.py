"""The benchmark: ``python -m bench.run [--quick]`` (``make bench``).

Per round (repeated ``--repeats`` times, layouts rotated so drift on a noisy
machine hits every layout alike): the naive and fast in-process baselines,
then one pipeline run per imaging layout.  Then one 50 MP image through the
pipeline for memory.  Prints the table, saves the raw numbers as JSON under
bench/out/ and writes docs/benchmarks.md + docs/benchmarks.png.

Every child process is stopped and every scratch vhost deleted on the way
out, including on Ctrl-C and SIGTERM.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import nameko
import PIL

from bench import baseline, config, costs, images, pipeline, report
from harness import rabbit

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LAYOUTS = "1x1,1x2,2x1,2x2,4x1"
# the 2 MP-only run, where the fixed cost per image weighs most: `make run`'s layout
SMALL_LAYOUT = "1x2"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="images per run (half 12 MP, half 2 MP)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--layouts", default=DEFAULT_LAYOUTS,
                        help="imaging layouts PROCESSESxMAX_WORKERS, comma-separated")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out"))
    parser.add_argument("--doc", default=str(REPO_ROOT / "docs" / "benchmarks.md"),
                        help="report to write (with a .png beside it)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--skip-huge", action="store_true", help="skip the 50 MP memory run")
    parser.add_argument("--skip-small", action="store_true",
                        help="skip the 2 MP-only run (limit and pipeline {})".format(SMALL_LAYOUT))
    parser.add_argument("--quick", action="store_true",
                        help="8 images, 1 round, layouts 1x2,2x1,4x1, no docs (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeats, args.layouts, args.no_doc = 8, 1, "1x2,2x1,4x1", True
    args.layouts = [pipeline.Layout.parse(text) for text in args.layouts.split(",") if text]
    return args


def log(message):
    print("[bench {}] {}".format(time.strftime("%H:%M:%S"), message), flush=True)


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt("signal {}".format(signum))


# -- facts about the machine and the code -----------------------------------------

def machine_info():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kb = int(meminfo.readline().split()[1])
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model,
            "mem_gib": round(mem_kb / 2**20), "python": platform.python_version(),
            "pillow": PIL.__version__, "nameko": getattr(nameko, "__version__", None) or _dist_version("nameko")}


def _dist_version(name):
    from importlib.metadata import version
    return version(name)


def git_info():
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    dirty = [line[3:] for line in git("status", "--porcelain").splitlines()
             if not line[3:].startswith(("bench/", "docs/benchmarks"))]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown", "dirty": dirty}


# -- the steps ---------------------------------------------------------------------

def measure_costs(corpus):
    """Message sizes and step times for the first 12 MP and first 2 MP image."""
    samples = {"large": next(i for i in corpus if i.width == images.LARGE[0]),
               "small": next(i for i in corpus if i.width == images.SMALL[0])}
    result = {"messages": {}, "summary": {}, "steps": {}}
    for key, image in samples.items():
        data = image.read()
        messages = costs.message_sizes(data)
        result["messages"][key] = messages
        result["summary"][key] = costs.summarize_messages(messages, len(data))
        result["steps"][key] = costs.step_times(data)
    return result


def run_round(index, corpus, bodies, paced_bodies, args, run_dir):
    paths = [image.path for image in corpus]
    round_ = {"baselines": {}, "pipeline": {}}
    for route in baseline.ROUTES:
        result = baseline.run_baseline(route, paths)
        round_["baselines"][route] = dict(vars(result), throughput=result.throughput)
        log("round {} {:>5} route: {:.2f} img/s".format(index + 1, route, result.throughput))
    shift = index % len(args.layouts)
    for layout in args.layouts[shift:] + args.layouts[:shift]:
        result = pipeline.run_pipeline(
            corpus, bodies, layout, run_dir / "r{}-{}".format(index + 1, layout.label),
            clients=args.clients, measure_traffic=index == 0, paced_bodies=paced_bodies)
        round_["pipeline"][layout.label] = result
        log("round {} pipeline {}: {:.2f} img/s, upload p50 {:.0f} ms, errors {}".format(
            index + 1, layout.label, result["throughput"], result["upload_p50_ms"] or 0, result["errors"]))
    round_["pipeline"] = {layout.label: round_["pipeline"][layout.label] for layout in args.layouts}
    if not args.skip_small:
        round_["small"] = run_small(index, corpus, args, run_dir)
    return round_


def run_small(index, corpus, args, run_dir):
    """The limit and the pipeline on the 2 MP images alone, measured back to back."""
    small = [image for image in corpus if image.width == images.SMALL[0]]
    limit = baseline.run_baseline("fast", [image.path for image in small])
    layout = pipeline.Layout.parse(SMALL_LAYOUT)
    result = pipeline.run_pipeline(small, pipeline.multipart_bodies(small), layout,
                                   run_dir / "r{}-small-{}".format(index + 1, layout.label),
                                   clients=args.clients, measure_traffic=index == 0)
    log("round {} 2 MP only: limit {:.2f} img/s, pipeline {} {:.2f} img/s".format(
        index + 1, limit.throughput, layout.label, result["throughput"]))
    return {"limit": dict(vars(limit), throughput=limit.throughput), "pipeline": result}


def run_huge(args, run_dir):
    huge = images.ensure_huge(args.out, args.seed, log=log)
    log("50 MP memory run ({:.1f} MB JPEG)".format(huge.size / 1e6))
    result = pipeline.run_big_image(huge, run_dir / "huge")
    inprocess = baseline.peak_rss_render(huge.path)
    return result, inprocess


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Ctrl-C, kill and a closed terminal all unwind through the finally blocks
    # that stop every service and delete every vhost (SIGINT is set explicitly:
    # a shell starts background jobs with it ignored).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    started = time.monotonic()
    out = Path(args.out)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = out / "runs" / stamp
    meta = dict(machine_info(), rabbitmq=rabbit.check_management(), git=git_info(),
                serializer=config.serializer(), presets=[vars(p) for p in config.presets()],
                date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), clients=args.clients,
                command="python -m bench.run" + "".join(" " + arg for arg in (argv or sys.argv[1:])))
    corpus = images.ensure_images(out, args.images, args.seed, log=log)
    meta["images"] = images.describe(corpus)
    bodies = pipeline.multipart_bodies(corpus)
    # encoded once, outside every measured window
    paced_bodies = (pipeline.multipart_bodies(corpus, "backlog"), pipeline.multipart_bodies(corpus, "paced"))
    results = {"meta": meta, "rounds": []}
    try:
        log("message sizes and step costs")
        results["costs"] = measure_costs(corpus)
        for index in range(args.repeats):
            results["rounds"].append(run_round(index, corpus, bodies, paced_bodies, args, run_dir))
        if not args.skip_huge:
            results["huge"], results["huge_inprocess_mb"] = run_huge(args, run_dir)
    except KeyboardInterrupt:
        log("interrupted; every service process has been stopped and its vhost deleted")
        return 130
    results["meta"]["seconds"] = round(time.monotonic() - started)
    save(results, out, stamp)
    print()
    report.print_report(results)
    if not args.no_doc:
        log("wrote {} and {}".format(*report.write_doc(results, args.doc)))
    log("done in {:.0f} s".format(time.monotonic() - started))
    return 0


def save(results, out, stamp):
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, default=str)
    (out / "results-{}.json".format(stamp)).write_text(text)
    (out / "latest.json").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
