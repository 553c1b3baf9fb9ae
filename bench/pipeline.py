"""The real pipeline under load: processes, readiness, load driver, measures.

Each run gets a scratch vhost and storage folder, starts storage, gateway and
N imaging processes (`nameko run --config config.yaml services.X`, configured
through the environment as an operator would), warms up with one tiny image,
then 8 client threads (plain ``requests``, no eventlet) upload every image.

* throughput: images / (first upload sent -> last ``image_processed`` event);
  completion is observed by a queue of our own bound to ``imaging.events``,
  so nobody polls the gateway while it is being measured; afterwards every
  image is checked with ``GET /images/<id>`` (status done, every preset);
* upload latency: POST sent -> 202 received, two ways:
  - burst: the 8 clients send every image back to back, so the uploads
    queue behind each other in gateway and storage as well as competing with
    the renders;
  - paced: with a backlog of jobs keeping every imaging worker busy, uploads
    arrive at the pipeline's own throughput (open loop: upload i is sent at
    i / rate, whatever the answers before it); the job queue must still hold
    waiting jobs at the end, or the run says the workers were not saturated;
* CPU seconds per image of every process (/proc/<pid>/stat), the broker's
  ``beam.smp`` and this driver included;
* peak RSS (VmHWM) per service process.
"""
import contextlib
import hashlib
import io
import re
import resource
import shutil
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kombu
import requests
from PIL import Image
from urllib3.filepost import encode_multipart_formdata

from bench.images import QUALITY, tiny_jpeg
from bench.stats import percentile
from harness import procstat
from harness.processes import ServiceProcess, free_port, service_env
from harness.rabbit import ScratchVhost, find_broker_pid, traffic_between
from services.topology import JOB_QUEUE, PROCESSED_EVENT

STORAGE_RPC_QUEUE = "rpc-storage"
PRESET_NAMES = ("thumb", "medium")
JOB_LOG_RE = re.compile(r"image ([0-9a-f]{32}) done in ([0-9.]+) s")
RETRY_LOG_RE = re.compile(r"image [0-9a-f]{32} attempt \d+ failed")


@dataclass(frozen=True)
class Layout:
    """``processes`` imaging processes with ``MAX_WORKERS=max_workers`` each."""
    processes: int
    max_workers: int

    @property
    def label(self):
        return "{}x{}".format(self.processes, self.max_workers)

    @classmethod
    def parse(cls, text):
        processes, _, workers = text.partition("x")
        return cls(int(processes), int(workers or 1))


class Cluster:
    """storage + gateway + imaging x N against one vhost; a context manager."""

    def __init__(self, vhost, layout, workdir):
        self.vhost, self.layout = vhost, layout
        self.storage_root = Path(workdir) / "storage"
        self.log_dir = Path(workdir) / "logs"
        self.port = free_port()
        self.base_url = "http://127.0.0.1:{}".format(self.port)
        self.services = []

    def __enter__(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_all()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def _start_all(self):
        uri, root = self.vhost.amqp_uri, self.storage_root
        self._start("storage", "services.storage", service_env(uri, root, self.port))
        self._start("gateway", "services.gateway", service_env(uri, root, self.port))
        for index in range(self.layout.processes):
            self._start("imaging-{}".format(index + 1), "services.imaging",
                        service_env(uri, root, self.port, MAX_WORKERS=self.layout.max_workers))

    def _start(self, label, module, env):
        service = ServiceProcess(module, env, self.log_dir, label, die_with_parent=True)
        self.services.append(service)
        service.start()

    @property
    def imaging(self):
        return [service for service in self.services if service.label.startswith("imaging")]

    def by_label(self, label):
        return next(service for service in self.services if service.label == label)

    def wait_ready(self, timeout=90):
        wanted = {STORAGE_RPC_QUEUE: 1, JOB_QUEUE: self.layout.processes}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            counts = self.vhost.consumer_counts(wanted)
            if all(counts[name] >= count for name, count in wanted.items()) and self._healthy():
                return
            time.sleep(0.3)
        raise RuntimeError("services not ready within {} s (consumers: {})".format(timeout, counts))

    def _healthy(self):
        try:
            return requests.get(self.base_url + "/health", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def check_alive(self):
        for service in self.services:
            if not service.alive:
                raise RuntimeError("{} exited with {}; log:\n{}".format(
                    service.label, service.process.returncode, service.log_tail()))

    def cpu_seconds(self):
        """CPU seconds so far: gateway, storage, imaging (all processes summed)."""
        return {
            "gateway": self.by_label("gateway").cpu_seconds(),
            "storage": self.by_label("storage").cpu_seconds(),
            "imaging": sum(service.cpu_seconds() for service in self.imaging),
        }

    def peak_rss_mb(self):
        """VmHWM per service; imaging: the largest process, and its render workers if any."""
        imaging = [service.peak_rss_mb() or 0.0 for service in self.imaging]
        workers = [rss for service in self.imaging for rss in service.children_peak_rss_mb()]
        return {
            "gateway": self.by_label("gateway").peak_rss_mb(),
            "storage": self.by_label("storage").peak_rss_mb(),
            "imaging": max(imaging),
            "imaging_each": imaging,
            "render_worker": max(workers) if workers else None,
            "render_workers": len(workers),
        }

    def imaging_logs(self):
        return "\n".join(service.log_tail(lines=100000) for service in self.imaging)

    def stop(self, timeout=15):
        """SIGTERM everything at once (as docker stop), SIGKILL what lingers."""
        for service in self.services:
            service.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in self.services:
            service.wait_or_kill(deadline - time.monotonic())


# -- completion events --------------------------------------------------------

class CompletionListener:
    """Records ``imaging.image_processed`` events: id -> (monotonic time, status).

    A plain thread with its own kombu connection and an exclusive queue bound
    to the imaging events exchange (declared exactly as nameko declares it).
    """

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.done = {}
        self.condition = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="completion-listener", daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("completion listener did not start: {}".format(self._error))
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        exchange = kombu.Exchange("imaging.events", type="topic", durable=True)
        queue = kombu.Queue("bench-processed-" + uuid.uuid4().hex[:8], exchange=exchange,
                            routing_key=PROCESSED_EVENT, exclusive=True, auto_delete=True)
        try:
            with kombu.Connection(self.amqp_uri, connect_timeout=10) as conn:
                with conn.Consumer(queue, callbacks=[self._on_message], accept=["json", "msgpack"]):
                    self._ready.set()
                    while not self._stop.is_set():
                        with contextlib.suppress(socket.timeout):
                            conn.drain_events(timeout=0.2)
        except Exception as exc:  # surfaced by wait_for / __enter__
            self._error = exc
            self._ready.set()

    def _on_message(self, body, message):
        with self.condition:
            self.done.setdefault(body.get("id"), (time.monotonic(), body.get("status")))
            self.condition.notify_all()
        message.ack()

    def wait_for(self, ids, timeout):
        """Wait until every id has an event; return the ids still missing."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while True:
                missing = [image_id for image_id in ids if image_id not in self.done]
                remaining = deadline - time.monotonic()
                if self._error:
                    raise RuntimeError("completion listener failed: {!r}".format(self._error))
                if not missing or remaining <= 0:
                    return missing
                self.condition.wait(min(remaining, 1.0))


# -- load driver ----------------------------------------------------------------

@dataclass
class Upload:
    index: int
    sent: float
    seconds: float
    status: int
    image_id: str = None
    error: str = None


def multipart_bodies(images, tag=None):
    """Pre-encoded request bodies, so the driver's own CPU stays out of the clock.

    With ``tag``, each image is new content (a new image id, no
    de-duplication) of the same size and decode cost: ``tagged_jpeg``.
    """
    bodies = []
    for index, image in enumerate(images):
        data = image.read()
        if tag is not None:
            data = tagged_jpeg(data, "{}-{}".format(tag, index))
        bodies.append(encode_multipart_formdata(
            {"image": ("{}-{}.jpg".format(tag or "bench", index), data, "image/jpeg")}))
    return bodies


def tagged_jpeg(data, tag):
    """The JPEG with ``tag`` written into a few pixels, re-encoded with the corpus's settings.

    Pixels, not a comment: the gateway stores originals without comments and
    metadata (KEEP_METADATA=false), so only pixels make new content.
    """
    digest = hashlib.sha256(tag.encode()).digest()
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
    for x in range(8):
        image.putpixel((x, 0), tuple(digest[3 * x:3 * x + 3]))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


_local = threading.local()


def _session():
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def post_upload(base_url, index, body, content_type, timeout=60):
    sent = time.monotonic()
    try:
        response = _session().post(base_url + "/upload", data=body,
                                   headers={"Content-Type": content_type}, timeout=timeout)
    except requests.RequestException as exc:
        return Upload(index, sent, time.monotonic() - sent, 0, error=type(exc).__name__)
    seconds = time.monotonic() - sent
    if response.status_code != 202:
        return Upload(index, sent, seconds, response.status_code, error=response.text[:200])
    return Upload(index, sent, seconds, 202, image_id=response.json()["id"])


def upload_paced(base_url, bodies, rate, clients):
    """Open-loop arrivals: upload i is sent at start + i / rate by client i % clients.

    Returns (uploads, late): ``late`` counts uploads sent more than 50 ms after
    their slot because their client was still waiting for an earlier answer.
    """
    start = time.monotonic() + 0.05
    late = []

    def client(number):
        done = []
        for index in range(number, len(bodies), clients):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.05:
                late.append(index)
            done.append(post_upload(base_url, index, *bodies[index]))
        return done

    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="paced") as pool:
        uploads = [upload for future in [pool.submit(client, n) for n in range(clients)]
                   for upload in future.result()]
    return sorted(uploads, key=lambda upload: upload.index), len(late)


def upload_all(base_url, bodies, clients):
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client") as pool:
        futures = [pool.submit(post_upload, base_url, index, body, content_type)
                   for index, (body, content_type) in enumerate(bodies)]
        return [future.result() for future in futures]


def verify(base_url, image_ids):
    """Ids whose final record is not done with every preset."""
    bad = []
    with requests.Session() as session:
        for image_id in image_ids:
            try:
                record = session.get("{}/images/{}".format(base_url, image_id), timeout=30).json()
            except (requests.RequestException, ValueError):
                bad.append(image_id)
                continue
            if record.get("status") != "done" or set(record.get("variants", {})) < set(PRESET_NAMES):
                bad.append(image_id)
    return bad


def warm_up(cluster, listener, tag):
    """Tiny uploads end to end, enough to reach every imaging worker: connections,
    reply queues, SQLite tables and any lazily started render processes."""
    count = 2 * cluster.layout.processes * cluster.layout.max_workers
    bodies = [encode_multipart_formdata({"image": ("warm.jpg", tiny_jpeg("{}-{}".format(tag, index)),
                                                   "image/jpeg")}) for index in range(count)]
    uploads = upload_all(cluster.base_url, bodies, clients=count)
    if any(upload.status != 202 for upload in uploads) or \
            listener.wait_for([upload.image_id for upload in uploads], 60):
        raise RuntimeError("warm-up uploads failed: {}".format(
            [(upload.status, upload.error) for upload in uploads if upload.status != 202]))


# -- one measured run -----------------------------------------------------------

class CpuMeter:
    """CPU seconds used between start() and stop() by the cluster, broker and driver."""

    def __init__(self, cluster, broker_pid):
        self.cluster, self.broker_pid = cluster, broker_pid

    def _sample(self):
        sample = dict(self.cluster.cpu_seconds())
        sample["broker"] = procstat.cpu_seconds(self.broker_pid) if self.broker_pid else 0.0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        sample["driver"] = usage.ru_utime + usage.ru_stime
        return sample

    def start(self):
        self.before = self._sample()

    def stop(self):
        after = self._sample()
        return {name: after[name] - self.before[name] for name in after}


def job_seconds(log_text, image_ids):
    wanted = set(image_ids)
    return [float(seconds) for image_id, seconds in JOB_LOG_RE.findall(log_text) if image_id in wanted]


def run_pipeline(images, bodies, layout, workdir, clients=8, measure_traffic=False, paced_bodies=None):
    """One measured run of ``layout``; returns a dict of measures."""
    workdir = Path(workdir)
    vhost = ScratchVhost("bench").create()
    try:
        with Cluster(vhost, layout, workdir) as cluster, \
                CompletionListener(vhost.amqp_uri) as listener:
            warm_up(cluster, listener, workdir.name)
            # per image = what moves while the images go through; connecting,
            # declaring and warming up happen once per process, not per image
            set_up = vhost.settled_traffic(balanced=False) if measure_traffic else None
            meter = CpuMeter(cluster, find_broker_pid())
            meter.start()
            uploads = upload_all(cluster.base_url, bodies, clients)
            accepted = [upload.image_id for upload in uploads if upload.image_id]
            missing = listener.wait_for(accepted, timeout=60 + 5 * len(images))
            cpu = meter.stop()
            cluster.check_alive()
            bad = verify(cluster.base_url, accepted)
            traffic = traffic_between(set_up, vhost.settled_traffic()) if measure_traffic else None
            result = _summarize(images, uploads, listener.done, accepted, missing, bad, cpu)
            result.update(layout=layout.label, peak_rss_mb=cluster.peak_rss_mb(), traffic=traffic,
                          set_up_traffic=set_up,
                          job_seconds=job_seconds(cluster.imaging_logs(), accepted),
                          job_retries=len(RETRY_LOG_RE.findall(cluster.imaging_logs())))
            result["errors"] += result["job_retries"]
            if paced_bodies:
                result.update(paced_latency(cluster, vhost, listener, paced_bodies,
                                            result["throughput"], clients))
            return result
    finally:
        vhost.delete()
        shutil.rmtree(workdir / "storage", ignore_errors=True)


def paced_latency(cluster, vhost, listener, paced_bodies, rate, clients):
    """Upload latency while every imaging worker is busy, uploads not bursting.

    ``paced_bodies``: (backlog, paced), each every image as new content
    (``multipart_bodies(images, tag)``).  The backlog, uploaded at once,
    keeps imaging saturated; the paced ones follow at ``rate`` (the run's
    own throughput, so the backlog neither drains nor piles up).
    """
    backlog_bodies, bodies = paced_bodies
    backlog = upload_all(cluster.base_url, backlog_bodies, clients)
    uploads, late = upload_paced(cluster.base_url, bodies, rate, clients)
    waiting = vhost.ready_messages(JOB_QUEUE)
    accepted = [upload.image_id for upload in backlog + uploads if upload.image_id]
    missing = listener.wait_for(accepted, timeout=60 + 5 * len(accepted))
    cluster.check_alive()
    failed = [upload for upload in backlog + uploads if upload.status != 202]
    not_done = [image_id for image_id in accepted
                if image_id not in missing and listener.done[image_id][1] != "done"]
    return {
        "paced_rate": rate,
        "paced_upload_ms": [round(upload.seconds * 1000, 2) for upload in uploads if upload.status == 202],
        "paced_late": late,
        "paced_jobs_waiting_at_end": waiting,
        "paced_errors": len(failed) + len(missing) + len(not_done),
        "paced_upload_errors": [(upload.status, upload.error) for upload in failed],
    }


def _summarize(images, uploads, done, accepted, missing, bad, cpu):
    first_sent = min(upload.sent for upload in uploads)
    finished = [done[image_id][0] for image_id in accepted if image_id in done]
    wall = (max(finished) - first_sent) if finished else float("nan")
    sent_at = {upload.image_id: upload.sent for upload in uploads if upload.image_id}
    latencies = [upload.seconds for upload in uploads if upload.status == 202]
    failed_uploads = [upload for upload in uploads if upload.status != 202]
    ok = len(accepted) - len(set(missing) | set(bad))
    return {
        "images": len(images),
        "done": ok,
        "seconds": wall,
        "throughput": ok / wall if finished else 0.0,
        "upload_ms": [round(seconds * 1000, 2) for seconds in latencies],
        "upload_p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "upload_p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "end_to_end_p50_s": percentile(
            [done[i][0] - sent_at[i] for i in accepted if i in done], 50) if finished else None,
        "upload_errors": [(upload.status, upload.error) for upload in failed_uploads],
        "errors": len(failed_uploads) + len(set(missing) | set(bad)),
        "cpu_seconds": cpu,
        "megapixels": sum(image.megapixels for image in images),
        "original_bytes": sum(image.size for image in images),
    }


def run_big_image(image, workdir, layout=Layout(1, 1)):
    """Peak RSS of every service while one large image goes through."""
    workdir = Path(workdir)
    vhost = ScratchVhost("bench").create()
    try:
        with Cluster(vhost, layout, workdir) as cluster, \
                CompletionListener(vhost.amqp_uri) as listener:
            warm_up(cluster, listener, workdir.name)
            before = cluster.peak_rss_mb()
            (body, content_type), = multipart_bodies([image])
            upload = post_upload(cluster.base_url, 0, body, content_type, timeout=120)
            missing = listener.wait_for([upload.image_id], 180) if upload.image_id else ["-"]
            status = None if missing else listener.done[upload.image_id][1]
            return {
                "width": image.width, "height": image.height, "bytes": image.size,
                "upload_status": upload.status, "status": status, "error": upload.error,
                "seconds": (listener.done[upload.image_id][0] - upload.sent) if status else None,
                "idle_rss_mb": before, "peak_rss_mb": cluster.peak_rss_mb(),
            }
    finally:
        vhost.delete()
        shutil.rmtree(workdir / "storage", ignore_errors=True)
