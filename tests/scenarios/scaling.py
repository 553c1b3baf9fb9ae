"""Scaling scenario: imaging follows the queue from zero to SCALE_MAX and back, losing nothing.

Starts storage and gateway (`nameko run`) and the scaler (`python -m
imagepipe scale`, which starts and stops `nameko run services.imaging`
processes) in a scratch vhost, with short cool-down and idle periods.  Then:

1. checks that no imaging process runs;
2. uploads a burst of distinct photo-like JPEGs from 8 clients: the scaler
   must cold-start and reach SCALE_MAX, and every image must end `done`;
3. as soon as the scaler begins to scale down (a process SIGTERMed), a second
   burst: every image of it must end `done` too;
4. waits for the idle period: no imaging process may be left, and none of
   the processes the scaler ever ran may outlive it;
5. audits the catalog: every rendition written exactly once, no queue
   holding a message.

    .venv/bin/python -m tests.scenarios.scaling --burst 120 --second-burst 40

Exit status 0 when every check passes; prints a table (and --json).
"""
import argparse
import io
import json
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from harness import procstat
from harness.processes import ServiceProcess, free_port, service_env, wait_for_http
from harness.rabbit import ScratchVhost, management_url
from harness.scaler import ScalerProcess
from services.topology import JOB_QUEUE
from tests.scenarios.chaos import (
    Blobs, CLIENTS, Stats, photo_like_jpeg, print_table, queue_audit, storage_audit,
    upload_until_accepted, wait_until_finished)

PRESETS = 2  # thumb and medium (config.yaml)


def distinct_jpegs(count, rng):
    """Photo-like JPEGs, each different content (ids are content hashes)."""
    images = []
    while len(images) < count:
        data = photo_like_jpeg(rng, rng.randrange(640, 1280), rng.randrange(480, 960))
        Image.open(io.BytesIO(data)).verify()
        images.append(data)
    return images


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("{} not seen within {} s".format(what, timeout))


class Watcher:
    """Samples the scaler's processes (from /proc and from its metrics) every 0.1 s."""

    def __init__(self, scaler):
        self.scaler = scaler
        # running: consuming (the scaler's count, held to SCALE_MAX); alive: every imaging
        # process on the machine, a stopping one finishing its jobs included (SCALE_MAX + 1)
        self.max_running = self.max_processes = 0
        self.seen_pids = set()
        self.latest = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            pids = self.scaler.imaging_pids()
            self.seen_pids.update(pids)
            self.latest = self.scaler.metrics() or self.latest
            running = self.latest.get("imagepipe_scaler_processes{state=running}", 0)
            self.max_running = max(self.max_running, int(running))
            self.max_processes = max(self.max_processes, len(pids), int(running))
            self._stop.wait(0.1)

    def metric(self, name):
        return self.latest.get(name, 0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def upload_burst(base_url, images, stats):
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda data: upload_until_accepted(base_url, data, stats), images))


def run(args):
    rng = random.Random(args.seed)
    first, second = distinct_jpegs(args.burst, rng), distinct_jpegs(args.second_burst, rng)
    workdir = Path(tempfile.mkdtemp(prefix="scaling-"))
    storage_root = workdir / "storage"
    stats = Stats()
    summary = {"logs": str(workdir), "scale_max": args.max,
               "counting": "ready + unacked" if args.management else "ready (AMQP)"}
    with ScratchVhost("scaling") as vhost:
        port = free_port()
        base_url = "http://127.0.0.1:{}".format(port)
        env = service_env(vhost.amqp_uri, storage_root, port, RPC_TIMEOUT=5)
        scaler_env = dict(env, SCALE_MIN=0, SCALE_MAX=args.max, SCALE_IDLE_SECONDS=args.idle,
                          SCALE_DOWN_COOLDOWN=args.cooldown, SCALE_POLL_INTERVAL=0.2,
                          SCALE_MANAGEMENT_URL=management_url() if args.management else "")
        storage_health = "http://127.0.0.1:{}/health".format(free_port())
        services = [ServiceProcess("services.storage", dict(
                        env, METRICS_ADDRESS=storage_health.split("/")[2]), workdir),
                    ServiceProcess("services.gateway", env, workdir)]
        scaler = ScalerProcess({key: str(value) for key, value in scaler_env.items()}, workdir)
        try:
            for process in services + [scaler]:
                process.start()
            wait_for_http(storage_health)  # storage consumes its RPC queue
            wait_for_http(base_url + "/health")
            wait_for(lambda: scaler.running() == 0, 30, "the scaler's metrics")
            summary["processes_at_start"] = len(scaler.imaging_pids())
            summary["consumers_at_start"] = vhost.consumer_counts([JOB_QUEUE])[JOB_QUEUE]
            with Watcher(scaler) as watcher:
                started = time.monotonic()
                ids = upload_burst(base_url, first, stats)
                final, pending = wait_until_finished(base_url, ids, args.drain_timeout)
                summary["first_burst_seconds"] = round(time.monotonic() - started, 1)
                summary["max_running_first_burst"] = watcher.max_running
                summary["max_processes_first_burst"] = watcher.max_processes
                # the second burst lands while a process is being stopped
                wait_for(lambda: watcher.metric("imagepipe_scaler_processes{state=stopping}") >= 1,
                         args.cooldown + args.idle + 30, "a scale-down")
                summary["running_when_second_burst_began"] = int(
                    watcher.metric("imagepipe_scaler_processes{state=running}"))
                second_ids = upload_burst(base_url, second, stats)
                final2, pending2 = wait_until_finished(base_url, second_ids, args.drain_timeout)
                final.update(final2)
                pending |= pending2
                drained = time.monotonic()
                wait_for(lambda: not scaler.imaging_pids() and scaler.running() == 0,
                         args.cooldown + args.idle + 60, "the return to zero")
                summary["seconds_to_zero_after_last_job"] = round(time.monotonic() - drained, 1)
                # stopping processes finishing their jobs included
                summary["max_processes_alive"] = watcher.max_processes
                metrics = dict(watcher.latest, **scaler.metrics())
            summary["consumers_at_end"] = vhost.consumer_counts([JOB_QUEUE])[JOB_QUEUE]
            summary["queues_not_empty"] = queue_audit(vhost)
            summary["scaler_stop_seconds"] = round(scaler.terminate(timeout=120), 1)
            summary["orphans"] = sorted(pid for pid in watcher.seen_pids if procstat.alive(pid))
            summary["imaging_processes_run"] = len(watcher.seen_pids)
        finally:
            for process in services + [scaler]:
                process.kill()
    audit = storage_audit(Blobs(storage_root))
    accepted = ids + second_ids
    summary.update({
        "uploads_accepted": len(accepted),
        "distinct_images": len(set(accepted)),
        "client_retries": stats.counts["client_retries"],
        "lost": len(pending),
        "not_done": sum(1 for body in final.values() if body["status"] != "done"),
        "renditions": audit["renditions"],
        "duplicated_renditions": len(audit["duplicated"]),
        "cold_starts": int(metrics.get("imagepipe_scaler_cold_start_seconds_count", 0)),
        "cold_start_seconds_mean": round(
            metrics.get("imagepipe_scaler_cold_start_seconds_sum", 0)
            / max(1, metrics.get("imagepipe_scaler_cold_start_seconds_count", 0)), 2),
        "scale_ups": int(metrics.get("imagepipe_scaler_decisions_total{direction=up}", 0)),
        "scale_downs": int(metrics.get("imagepipe_scaler_decisions_total{direction=down}", 0)),
        "unexpected_exits": int(metrics.get("imagepipe_scaler_unexpected_exits_total", 0)),
    })
    summary["ok"] = (
        summary["processes_at_start"] == 0 and summary["consumers_at_start"] == 0
        and summary["max_running_first_burst"] == args.max
        and summary["max_processes_first_burst"] <= args.max + 1
        and summary["running_when_second_burst_began"] >= 0
        and summary["lost"] == 0 and summary["not_done"] == 0
        and summary["renditions"] == PRESETS * summary["distinct_images"]
        and summary["duplicated_renditions"] == 0 and not summary["queues_not_empty"]
        and summary["consumers_at_end"] == 0 and not summary["orphans"]
        and summary["cold_starts"] >= 1 and summary["unexpected_exits"] == 0)
    return summary


MEASURES = (
    "scale_max", "counting", "processes_at_start", "consumers_at_start", "uploads_accepted", "distinct_images",
    "client_retries", "max_running_first_burst", "max_processes_first_burst", "first_burst_seconds",
    "running_when_second_burst_began", "max_processes_alive", "seconds_to_zero_after_last_job",
    "consumers_at_end", "lost", "not_done", "renditions", "duplicated_renditions",
    "queues_not_empty", "cold_starts", "cold_start_seconds_mean", "scale_ups", "scale_downs",
    "unexpected_exits", "imaging_processes_run", "orphans", "scaler_stop_seconds", "ok")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=120)
    parser.add_argument("--second-burst", type=int, default=40)
    parser.add_argument("--max", type=int, default=2, help="SCALE_MAX")
    parser.add_argument("--idle", type=float, default=6.0, help="SCALE_IDLE_SECONDS")
    parser.add_argument("--cooldown", type=float, default=2.0, help="SCALE_DOWN_COOLDOWN")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--management", action="store_true",
                        help="the scaler also counts jobs in flight (SCALE_MANAGEMENT_URL)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON last")
    return parser.parse_args(argv)


def main(argv=None):
    summary = run(parse_args(argv))
    print_table(summary, MEASURES)
    if "--json" in (argv or sys.argv[1:]):
        print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
