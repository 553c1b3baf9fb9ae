"""The scaler's costs: ``python -m bench.scaling`` (part of ``make bench``).

* **Cold start**: with no imaging process running, one 2 MP upload ->
  ``image_processed`` (done), ``--cold-starts`` times (median reported), split
  into where the time goes, from the scaler's own log lines: the upload
  (POST -> 202), noticing the job (202 -> "scale up 0 -> 1"), the process
  starting (fork -> nameko starting the service: interpreter and imports;
  -> its consumer connected: queue declarations and connections), the job
  (imaging's "done in" line, render worker start included) and the
  ``image_processed`` event reaching the benchmark.  A warm
  upload right after each cold one shows the same path without the start.
* **Throughput on a long burst**: ``--burst`` distinct images (the benchmark
  corpus, each copy tagged in its pixels so it is new content) uploaded at once by 8
  clients, under the scaler from zero up to ``--max`` processes, and with a
  fixed pool of ``--max`` warm processes (same MAX_WORKERS); rounds
  alternate, medians reported.

Results: bench/out/scaling-<time>.json and the table printed; record them in
bench/EXPERIMENTS.md.
"""
import argparse
import json
import math
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from bench import images
from bench.pipeline import (
    CompletionListener, Cluster, Layout, multipart_bodies, post_upload, upload_all, verify, warm_up)
from bench.run import _raise_interrupt, git_info, log, machine_info
from bench.stats import median
from harness.processes import free_port, service_env, wait_for_http
from harness.rabbit import ScratchVhost
from harness.scaler import ScalerProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
# log lines (scaler and its imaging processes share one log), timestamped to the millisecond
STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
SCALE_UP_RE = re.compile(STAMP + r"INFO imagepipe\.scaling\.scaler .*scale up 0 -> ", re.M)
STARTING_RE = re.compile(STAMP + r"INFO nameko\.runners .*starting services: imaging", re.M)
CONNECTED_RE = re.compile(STAMP + r"INFO kombu\.mixins .*Connected to amqp", re.M)
JOB_RE = STAMP + r"INFO services\.imaging .*image (\w+) done in ([0-9.]+) s"


class ScaledCluster(Cluster):
    """storage + gateway + the scaler (which runs imaging); ``layout.processes`` is SCALE_MAX."""

    def __init__(self, vhost, layout, workdir, idle_seconds):
        super().__init__(vhost, layout, workdir)
        self.idle_seconds = idle_seconds
        self.storage_health = "http://127.0.0.1:{}/health".format(free_port())

    def _start_all(self):
        uri, root = self.vhost.amqp_uri, self.storage_root
        self._start("storage", "services.storage", service_env(
            uri, root, self.port, METRICS_ADDRESS=self.storage_health.split("/")[2]))
        self._start("gateway", "services.gateway", service_env(uri, root, self.port))
        env = service_env(uri, root, self.port, SCALE_MIN=0, SCALE_MAX=self.layout.processes,
                          SCALE_JOBS_PER_PROCESS=self.layout.max_workers,
                          SCALE_IDLE_SECONDS=self.idle_seconds,
                          SCALE_DOWN_COOLDOWN=self.idle_seconds)
        self.scaler = ScalerProcess(env, self.log_dir, die_with_parent=True)
        self.services.append(self.scaler)
        self.scaler.start()

    def wait_ready(self, timeout=90):
        wait_for_http(self.storage_health, timeout)
        wait_for_http(self.base_url + "/health", timeout)
        self.wait_for_zero(timeout)

    def wait_for_zero(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if not self.scaler.imaging_pids() and self.scaler.running() == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("the scaler did not return to zero within {} s".format(timeout))

    def scaler_log(self):
        return self.scaler.log_tail(lines=10 ** 7)


def _log_time(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def cold_starts(corpus, count, workdir, max_processes, jobs_per_process):
    """``count`` cold starts (and a warm upload after each), each split into its parts."""
    small = next(image for image in corpus if image.width == images.SMALL[0])
    bodies = multipart_bodies([small] * (2 * count), "cold")
    runs = []
    vhost = ScratchVhost("bench-cold").create()
    try:
        with ScaledCluster(vhost, Layout(max_processes, jobs_per_process), workdir,
                           idle_seconds=1) as cluster, \
                CompletionListener(vhost.amqp_uri) as listener:
            for index in range(count):
                cluster.wait_for_zero()
                time.sleep(0.5)
                runs.append(_one_cold_start(cluster, listener, bodies[2 * index], bodies[2 * index + 1],
                                            index))
                log("cold start {}: {:.2f} s (warm {:.2f} s)".format(
                    index + 1, runs[-1]["cold_seconds"], runs[-1]["warm_seconds"]))
    finally:
        vhost.delete()
    return runs


def _one_cold_start(cluster, listener, cold_body, warm_body, index):
    already = len(cluster.scaler_log())
    sent_wall = time.time()
    cold = post_upload(cluster.base_url, 2 * index, *cold_body)
    if cold.status != 202 or listener.wait_for([cold.image_id], 120):
        raise RuntimeError("cold upload failed: {} {}".format(cold.status, cold.error))
    done_seconds = listener.done[cold.image_id][0] - cold.sent
    warm = post_upload(cluster.base_url, 2 * index + 1, *warm_body)
    if warm.status != 202 or listener.wait_for([warm.image_id], 120):
        raise RuntimeError("warm upload failed: {} {}".format(warm.status, warm.error))
    text = cluster.scaler_log()[already:]
    found = [pattern.search(text) for pattern in (SCALE_UP_RE, STARTING_RE, CONNECTED_RE)]
    if not all(found):
        raise RuntimeError("cold start {}: log lines missing ({}):\n{}".format(
            index + 1, [bool(match) for match in found], text[-3000:]))
    times = [_log_time(match.group(1)) for match in found]
    job_done, job = next((_log_time(stamp), float(seconds))
                         for stamp, image_id, seconds in re.findall(JOB_RE, text, re.M)
                         if image_id == cold.image_id)
    accepted, done = sent_wall + cold.seconds, sent_wall + done_seconds
    return {
        "cold_seconds": done_seconds,
        "warm_seconds": listener.done[warm.image_id][0] - warm.sent,
        # where the cold start went, in order
        "upload": cold.seconds,  # POST -> 202
        "notice": times[0] - accepted,  # 202 -> the scaler starts a process
        "interpreter_imports": times[1] - times[0],  # fork -> nameko starts the service
        "service_setup": times[2] - times[1],  # queues declared, consumer connected
        "job_wait": job_done - job - times[2],  # consumer up -> job claimed
        "job": job,  # claim, render (render worker started), complete
        "event": done - job_done,  # image_processed reaches the listener
    }


def burst_bodies(corpus, count):
    """``count`` distinct upload bodies: the corpus over and over, each copy tagged (new content)."""
    copies = math.ceil(count / len(corpus))
    return [body for copy in range(copies)
            for body in multipart_bodies(corpus, "burst{}".format(copy))][:count]


def burst(bodies, workdir, layout, scaled):
    """Throughput of ``bodies`` uploaded at once: from zero under the scaler, or a warm fixed pool."""
    count = len(bodies)
    vhost = ScratchVhost("bench-burst").create()
    try:
        cluster = (ScaledCluster(vhost, layout, workdir, idle_seconds=5) if scaled
                   else Cluster(vhost, layout, workdir))
        with cluster, CompletionListener(vhost.amqp_uri) as listener:
            warm_up(cluster, listener, "warm-{}".format(workdir.name))
            if scaled:
                cluster.wait_for_zero()
            uploads = upload_all(cluster.base_url, bodies, clients=8)
            accepted = [upload.image_id for upload in uploads if upload.image_id]
            missing = listener.wait_for(accepted, 120 + 5 * count)
            first_sent = min(upload.sent for upload in uploads)
            last_done = max(listener.done[image_id][0] for image_id in accepted if image_id in listener.done)
            bad = verify(cluster.base_url, accepted)
            return {"images": count, "done": len(accepted) - len(set(missing) | set(bad)),
                    "seconds": last_done - first_sent,
                    "throughput": (len(accepted) - len(missing)) / (last_done - first_sent),
                    "errors": len(uploads) - len(accepted) + len(set(missing) | set(bad))}
    finally:
        vhost.delete()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--cold-starts", type=int, default=7)
    parser.add_argument("--burst", type=int, default=240, help="images per throughput run")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds (each: fixed, scaled)")
    parser.add_argument("--max", type=int, default=2, help="SCALE_MAX = processes of the fixed pool")
    parser.add_argument("--jobs-per-process", type=int, default=2, help="MAX_WORKERS of each")
    parser.add_argument("--images", type=int, default=24, help="corpus size (half 12 MP, half 2 MP)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out"))
    parser.add_argument("--quick", action="store_true",
                        help="3 cold starts and one round of 48-image bursts (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.cold_starts, args.burst, args.rounds = 3, 48, 1
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    out = Path(args.out)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    run_dir = out / "runs" / ("scaling-" + stamp)
    corpus = images.ensure_images(out, args.images, args.seed, log=log)
    results = {"meta": dict(machine_info(), git=git_info(), args=vars(args))}
    layout = Layout(args.max, args.jobs_per_process)
    try:
        results["cold_starts"] = cold_starts(corpus, args.cold_starts, run_dir / "cold",
                                             args.max, args.jobs_per_process)
        results["bursts"] = {"fixed": [], "scaled": []}
        bodies = [] if args.skip_throughput else burst_bodies(corpus, args.burst)
        for round_ in range(0 if args.skip_throughput else args.rounds):
            for mode in ("fixed", "scaled") if round_ % 2 == 0 else ("scaled", "fixed"):
                result = burst(bodies, run_dir / "{}-{}".format(mode, round_ + 1), layout,
                               scaled=mode == "scaled")
                results["bursts"][mode].append(result)
                log("burst {} {}: {:.2f} img/s ({} done, {} errors)".format(
                    round_ + 1, mode, result["throughput"], result["done"], result["errors"]))
    except KeyboardInterrupt:
        log("interrupted; every service process has been stopped and its vhost deleted")
        return 130
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling-{}.json".format(stamp)).write_text(json.dumps(results, indent=1, default=str))
    print_report(results)
    return 0


COLD_PARTS = ("cold_seconds", "warm_seconds", "upload", "notice", "interpreter_imports",
              "service_setup", "job_wait", "job", "event")


def print_report(results):
    runs = results["cold_starts"]
    print("\ncold start, {} runs (median; min-max):".format(len(runs)))
    for key in COLD_PARTS:
        values = [run[key] for run in runs]
        print("  {:<20} {:6.2f} s  ({:.2f} to {:.2f})".format(
            key, median(values), min(values), max(values)))
    bursts = results.get("bursts") or {}
    if bursts.get("fixed") and bursts.get("scaled"):
        fixed = median([run["throughput"] for run in bursts["fixed"]])
        scaled = median([run["throughput"] for run in bursts["scaled"]])
        print("burst of {} images: fixed pool {:.2f} img/s {}, scaler from zero {:.2f} img/s {} "
              "-> {:.1%} of the fixed pool".format(
                  bursts["fixed"][0]["images"], fixed,
                  [round(run["throughput"], 2) for run in bursts["fixed"]], scaled,
                  [round(run["throughput"], 2) for run in bursts["scaled"]], scaled / fixed))


if __name__ == "__main__":
    sys.exit(main())
