"""Chaos scenario: no accepted upload is lost, none is processed twice.

Starts storage, gateway and several imaging processes (`nameko run`, one OS
process each) against the real RabbitMQ in a scratch vhost, uploads images
over HTTP from 8 clients, and meanwhile SIGKILLs imaging processes at random
(restarting them), kills and restarts storage, and restarts RabbitMQ.  Then it
checks that every upload answered 202 ended `done` (or `failed`, for the
deliberately corrupt ones), that every rendition was written once, that no
queue holds an unacknowledged or stranded job, and that no blob is orphaned.

    .venv/bin/python -m tests.scenarios.chaos --uploads 300 --imaging-kills 5 \\
        --storage-restarts 1 --broker-restarts 1

Blobs are files in a scratch folder, or with --s3 objects in a bucket of a
SeaweedFS server of the run's own (tests/s3server.py); the catalog is SQLite,
or with --postgres a scratch PostgreSQL database.  The audit reads the disk or
lists the bucket directly, not through the pipeline.

Needs a local RabbitMQ (it restarts it with rabbitmqctl) with the management
plugin.  Exit status 0 when every check passes; prints a table and, with
--json, a machine-readable summary.
"""
import argparse
import contextlib
import io
import json
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image, ImageDraw, ImageFilter

from harness.processes import ServiceProcess, free_port, service_env, wait_for_http
from harness.rabbit import ScratchVhost, rabbitmq_restart, wait_for_management
from imagepipe.storage.grants import STAGING_PREFIX

CLIENTS = 8


def photo_like_jpeg(rng, width, height):
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(20, max(21, width // 4))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius),
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(2))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=rng.randrange(80, 95))
    return out.getvalue()


def make_uploads(count, corrupt_every, seed):
    """(bytes, expected final status) pairs; some are truncated after the header."""
    rng = random.Random(seed)
    uploads = []
    for index in range(count):
        data = photo_like_jpeg(rng, rng.randrange(900, 2400), rng.randrange(700, 1800))
        if corrupt_every and index % corrupt_every == corrupt_every - 1:
            uploads.append((data[: len(data) // 3], "failed"))
        else:
            uploads.append((data, "done"))
    return uploads


FAULTS = ("imaging_kills", "storage_restarts", "broker_restarts", "gateway_kills")
STAGING_MAX_AGE = 15
S3_PREFIX = "chaos"


class Blobs:
    """Where a run's blobs are, and every one's key: files under the storage
    folder, or objects in a bucket (their prefix cut off, so keys are alike)."""

    def __init__(self, storage_root, s3_server=None):
        self.storage_root = Path(storage_root)
        self.s3_server = s3_server
        self.bucket = "chaos-{}".format(uuid.uuid4().hex[:10])

    @property
    def settings(self):
        if not self.s3_server:
            return {}
        return {**self.s3_server.pipeline_settings(self.bucket, S3_PREFIX),
                **self.s3_server.credentials}

    def keys(self):
        if self.s3_server:
            return [key.removeprefix(S3_PREFIX + "/") for key in self.s3_server.objects(self.bucket)]
        return [path.relative_to(self.storage_root).as_posix()
                for folder in ("originals", "variants", "staging")
                for path in (self.storage_root / folder).rglob("*") if path.is_file()]

    def staged(self):
        return [key for key in self.keys() if key.startswith(STAGING_PREFIX)]


def staging_swept(blobs, timeout):
    """Wait (bounded) until no staged blob is left; the audit then says what remains."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and blobs.staged():
        time.sleep(1)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"client_retries": 0, **{fault: 0 for fault in FAULTS}}
        self.events = []
        self.fault_errors = []

    def bump(self, key, note=None):
        with self.lock:
            self.counts[key] += 1
            if note:
                self.events.append((round(time.monotonic(), 1), note))


def upload_until_accepted(base_url, data, stats, give_up_after=180):
    """A well-behaved client: retries 503 (after Retry-After) and connection errors."""
    deadline = time.monotonic() + give_up_after
    while time.monotonic() < deadline:
        try:
            response = requests.post(base_url + "/upload", files={"image": ("p.jpg", data)},
                                     timeout=30)
        except requests.RequestException:
            stats.bump("client_retries")
            time.sleep(1)
            continue
        if response.status_code == 202:
            return response.json()["id"]
        if response.status_code in (502, 503, 504):
            stats.bump("client_retries")
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        raise AssertionError("upload answered {}: {}".format(response.status_code, response.text))
    raise AssertionError("upload not accepted within {} s".format(give_up_after))


def chaos_schedule(args, rng):
    actions = (["kill_imaging"] * args.imaging_kills + ["restart_storage"] * args.storage_restarts
               + ["restart_broker"] * args.broker_restarts
               + ["kill_gateway_mid_upload"] * args.gateway_kills)
    rng.shuffle(actions)
    # spread over the busy period, leaving a gap for recovery between actions
    step = args.duration / (len(actions) + 1) if actions else 0
    return [(step * (index + 1) + rng.uniform(-step / 4, step / 4), action)
            for index, action in enumerate(actions)]


def run_chaos(schedule, cluster, stats, rng, started):
    """Inject each scheduled fault; a fault is counted once it has happened.

    One that could not be injected (say, rabbitmqctl is missing) is recorded
    in ``stats.fault_errors``, and the run fails: a chaos run that silently
    skipped its faults would prove nothing.
    """
    for at, action in schedule:
        time.sleep(max(0.0, started + at - time.monotonic()))
        try:
            inject(action, cluster, stats, rng)
        except Exception as exc:  # recorded, and the summary's "ok" is false
            stats.fault_errors.append("{}: {!r}".format(action, exc))


def inject(action, cluster, stats, rng):
    if action == "kill_imaging":
        victim = rng.choice(cluster["imaging"])
        victim.kill()
        stats.bump("imaging_kills", "SIGKILL " + victim.label)
        time.sleep(1)
        victim.start()
    elif action == "restart_storage":
        cluster["storage"].kill()
        stats.bump("storage_restarts", "SIGKILL storage")
        time.sleep(2)
        cluster["storage"].start()
    elif action == "restart_broker":
        rabbitmq_restart(down_seconds=3)
        stats.bump("broker_restarts", "restart RabbitMQ")
    elif action == "kill_gateway_mid_upload":
        kill_gateway_mid_upload(cluster)
        stats.bump("gateway_kills", "SIGKILL gateway mid-upload")
    else:
        raise ValueError("unknown fault " + action)


def kill_gateway_mid_upload(cluster, body_bytes=4 * 1024 * 1024):
    """SIGKILL the gateway while an upload's body is half sent, and start it again.

    The half-sent upload was never accepted, so nothing of it may be stored;
    a blob it had staged would be dropped by the storage sweeper
    (STAGING_MAX_AGE), which the audit checks.
    """
    gateway = cluster["gateway"]
    host, port = gateway.env["WEB_SERVER_ADDRESS"].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                       "Content-Length: {}\r\n\r\n".format(body_bytes).encode())
        client.sendall(b"\xff\xd8" + b"\x00" * (body_bytes // 2))
        time.sleep(0.3)
        gateway.kill()
    time.sleep(1)
    gateway.start()


def faults_missing(requested, counts):
    """{fault: (requested, injected)} for every fault that did not happen as often as asked."""
    return {fault: (wanted, counts[fault]) for fault, wanted in requested.items()
            if counts[fault] != wanted}


def wait_until_finished(base_url, ids, timeout):
    pending = set(ids)
    final = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for image_id in list(pending):
            try:
                body = requests.get("{}/images/{}".format(base_url, image_id), timeout=10).json()
            except (requests.RequestException, ValueError):
                continue
            if body.get("status") in ("done", "failed"):
                final[image_id] = body
                pending.discard(image_id)
        if pending:
            time.sleep(0.5)
    return final, pending


def storage_audit(blobs, storage_db=None):
    """Rendition write counts, and blobs orphaned, missing or half-written: from
    the disk or the bucket, against the catalog."""
    from imagepipe.settings import default_db_url
    from imagepipe.storage.blobs import original_key, variant_key
    from imagepipe.storage.catalog import make_engine

    engine = make_engine(storage_db or default_db_url(str(blobs.storage_root)))
    with engine.connect() as db:
        writes = db.exec_driver_sql(
            "SELECT image_id, preset, format, format_in_key, writes FROM variants").fetchall()
        known = {original_key(row[0]) for row in db.exec_driver_sql("SELECT id FROM images")}
    engine.dispose()
    # a rendition's key ends <preset>.<format> (before formats per preset: <preset>)
    known |= {variant_key(image_id, preset, fmt if in_key else None)
              for image_id, preset, fmt, in_key, _ in writes}
    writes = [(image_id, preset, count) for image_id, preset, _, _, count in writes]
    stored = blobs.keys()
    # blobs staged under grants that nobody registered (a gateway killed mid-write)
    temporary = [key for key in stored if key.startswith(STAGING_PREFIX)]
    temporary += [str(path) for path in blobs.storage_root.rglob(".tmp-*")]
    orphans = [key for key in stored if key not in known and not key.startswith(STAGING_PREFIX)]
    duplicated = [(image_id, preset, count) for image_id, preset, count in writes if count != 1]
    return {"renditions": len(writes), "duplicated": duplicated, "orphans": orphans,
            "missing": sorted(known.difference(stored)), "temporary_files": temporary}


def queue_audit(vhost, settle_seconds=15):
    """Queues still holding messages (ready or unacknowledged), ignoring RPC replies.

    The management API samples queue lengths every few seconds, so a
    non-empty answer is re-read until it settles.
    """
    wait_for_management()
    deadline = time.monotonic() + settle_seconds
    while True:
        leftovers = {}
        for queue in vhost.queues():
            if queue["name"].startswith("rpc.reply"):
                continue
            held = queue.get("messages", 0) + queue.get("messages_unacknowledged", 0)
            if held:
                leftovers[queue["name"]] = held
        if not leftovers or time.monotonic() > deadline:
            return leftovers
        time.sleep(1)


def run(args):
    rng = random.Random(args.seed)
    uploads = make_uploads(args.uploads, args.corrupt_every, args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    blobs = Blobs(workdir / "storage", args.s3_server)
    stats = Stats()
    with ScratchVhost("chaos") as vhost:
        port = free_port()
        base_url = "http://127.0.0.1:{}".format(port)
        env = service_env(vhost.amqp_uri, blobs.storage_root, port, RPC_TIMEOUT=5, STALLED_AFTER=30,
                          SWEEP_INTERVAL=5, STAGING_MAX_AGE=STAGING_MAX_AGE,
                          JOB_RETRY_DELAYS="1,2,5", JOB_MAX_ATTEMPTS=10,
                          STORAGE_DB=args.storage_db or "", **blobs.settings)
        imaging_env = dict(env, MAX_WORKERS="2")
        cluster = {
            "storage": ServiceProcess("services.storage", env, workdir),
            "gateway": ServiceProcess("services.gateway", env, workdir),
            "imaging": [ServiceProcess("services.imaging", imaging_env, workdir, "imaging-{}".format(i))
                        for i in range(args.imaging)],
        }
        everything = [cluster["storage"], cluster["gateway"], *cluster["imaging"]]
        try:
            for process in everything:
                process.start()
            wait_for_http(base_url + "/health")
            time.sleep(1)  # let imaging bind its queues

            started = time.monotonic()
            chaos = threading.Thread(target=run_chaos, daemon=True, args=(
                chaos_schedule(args, rng), cluster, stats, rng, started))
            chaos.start()
            pause = args.duration / max(1, len(uploads)) * CLIENTS

            def client(item):
                index, (data, expected) = item
                # spread uploads over --duration; a client running behind schedule goes on at once
                due = started + pause * (index // CLIENTS)
                time.sleep(max(0.0, due - time.monotonic()))
                return upload_until_accepted(base_url, data, stats), expected

            with ThreadPoolExecutor(CLIENTS) as pool:
                accepted = list(pool.map(client, enumerate(uploads)))
            uploads_done = time.monotonic()
            chaos.join()
            final, pending = wait_until_finished(base_url, [image_id for image_id, _ in accepted],
                                                 args.drain_timeout)
            drained = time.monotonic()
            leftovers = queue_audit(vhost)
            # blobs staged by a killed gateway (or for uploads answered 503) are
            # swept by storage once older than STAGING_MAX_AGE; wait for that
            staging_swept(blobs, STAGING_MAX_AGE + 3 * 5)
            shutdown = {process.label: round(process.terminate(), 2) for process in everything}
        finally:
            for process in everything:
                process.kill()
        audit = storage_audit(blobs, args.storage_db)

    expected_by_id = {}
    for image_id, expected in accepted:
        expected_by_id.setdefault(image_id, expected)
    wrong = {image_id: final[image_id]["status"] for image_id, expected in expected_by_id.items()
             if image_id in final and final[image_id]["status"] != expected}
    requested = {"imaging_kills": args.imaging_kills, "storage_restarts": args.storage_restarts,
                 "broker_restarts": args.broker_restarts, "gateway_kills": args.gateway_kills}
    missing = faults_missing(requested, stats.counts)
    summary = {
        "uploads_accepted": len(accepted),
        "distinct_images": len(expected_by_id),
        "expected_failed": sum(1 for e in expected_by_id.values() if e == "failed"),
        **stats.counts,
        "faults_requested": requested,
        "faults_missing": missing,
        "fault_errors": stats.fault_errors,
        "lost": len(pending),
        "wrong_status": len(wrong),
        "duplicated_renditions": len(audit["duplicated"]),
        "renditions": audit["renditions"],
        "orphaned_blobs": len(audit["orphans"]),
        "missing_blobs": len(audit["missing"]),
        "temporary_files": len(audit["temporary_files"]),
        "queues_not_empty": leftovers,
        "seconds_uploading": round(uploads_done - started, 1),
        "seconds_to_drain": round(drained - uploads_done, 1),
        "max_shutdown_seconds": max(shutdown.values()),
        "shutdown_seconds": shutdown,
        "catalog": "postgresql" if args.storage_db else "sqlite",
        "blob_store": "s3" if args.s3_server else "files",
        "logs": str(workdir),
    }
    ok = (not missing and not stats.fault_errors and not pending and not wrong and not audit["duplicated"] and not audit["orphans"]
          and not audit["missing"] and not audit["temporary_files"] and not leftovers
          and summary["max_shutdown_seconds"] <= 10)
    summary["ok"] = ok
    if wrong:
        summary["wrong_examples"] = {k: final[k].get("error") for k in list(wrong)[:5]}
    if pending:
        summary["lost_examples"] = sorted(pending)[:5]
    for kind in ("orphans", "missing", "temporary_files"):
        if audit[kind]:
            summary[kind + "_examples"] = audit[kind][:5]
    return summary


MEASURES = (
    "uploads_accepted", "distinct_images", "expected_failed", "imaging_kills",
    "storage_restarts", "broker_restarts", "gateway_kills", "faults_missing", "client_retries", "blob_store", "catalog", "lost", "wrong_status",
    "duplicated_renditions", "orphaned_blobs", "missing_blobs", "temporary_files", "queues_not_empty",
    "seconds_uploading", "seconds_to_drain", "max_shutdown_seconds", "ok")


def print_table(summary, measures=MEASURES):
    rows = [(key, summary[key]) for key in measures]
    width = max(len(key) for key, _ in rows)
    print("| {} | value |".format("measure".ljust(width)))
    print("| {} | ----- |".format("-" * width))
    for key, value in rows:
        print("| {} | {} |".format(key.ljust(width), value))
    print("logs:", summary["logs"])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--imaging", type=int, default=3, help="imaging processes")
    parser.add_argument("--imaging-kills", type=int, default=5)
    parser.add_argument("--storage-restarts", type=int, default=1)
    parser.add_argument("--broker-restarts", type=int, default=1)
    parser.add_argument("--gateway-kills", type=int, default=1,
                        help="SIGKILLs of the gateway while an upload body is half sent")
    parser.add_argument("--corrupt-every", type=int, default=10)
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds over which uploads and chaos are spread")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--storage-db", default=None,
                        help="SQLAlchemy URL of the catalog (default: SQLite in the storage folder)")
    parser.add_argument("--postgres", action="store_true",
                        help="run against a scratch PostgreSQL database (TEST_POSTGRES_URL)")
    parser.add_argument("--s3", action="store_true",
                        help="blobs in a bucket of a SeaweedFS S3 server started for the run")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON last")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.s3_server = None
    with contextlib.ExitStack() as cleanup:
        if args.postgres:
            from tests.helpers import ScratchDatabase

            args.storage_db = cleanup.enter_context(ScratchDatabase()).url
        if args.s3:
            from tests.s3server import SeaweedS3

            args.s3_server = SeaweedS3(tempfile.mkdtemp(prefix="chaos-seaweedfs-")).start()
            cleanup.callback(args.s3_server.stop)
        summary = run(args)
    print_table(summary)
    if args.json:
        print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
