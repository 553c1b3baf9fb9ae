"""Broker fail-over: a RabbitMQ node dies mid-run and no accepted upload is lost.

Starts a three-node RabbitMQ cluster on this machine (``scripts/rabbit-cluster.sh``,
ports 5681-5683; the main broker at 5672 is not touched), runs storage, gateway
and two imaging processes against it with quorum queues and a fail-over
``AMQP_URI`` listing all three nodes, uploads photo-like JPEGs from 8 clients
and meanwhile SIGKILLs the node that leads the job queue's Raft group.  Then it
checks that every upload answered 202 ended ``done``, that every rendition was
written exactly once and that no queue still holds a message.

    .venv/bin/python -m tests.scenarios.broker_cluster --uploads 40

Exit status 0 when every check passes; prints a table (and with --json a
machine-readable summary last).  The cluster is stopped and its data deleted
afterwards, also on failure.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import requests

from services.topology import JOB_QUEUE
from tests.scenarios.chaos import (
    CLIENTS, Blobs, Stats, make_uploads, print_table, storage_audit, upload_until_accepted,
    wait_until_finished,
)
from harness.config import REPO_ROOT
from harness.processes import ServiceProcess, free_port, service_env, wait_for_http

SCRIPT = str(REPO_ROOT / "scripts" / "rabbit-cluster.sh")
NODES = ("a", "b", "c")


class BrokerCluster:
    """The three local nodes of ``scripts/rabbit-cluster.sh``; stopped on exit."""

    def __init__(self, workdir, base_port=5681):
        self.env = {"RABBIT_CLUSTER_DIR": str(Path(workdir) / "imagepipe-rabbit-cluster"),
                    "RABBIT_CLUSTER_BASE_PORT": str(base_port)}
        self.base_port = base_port
        self.amqp_uri = None
        self.killed = set()

    def _script(self, *args, timeout=240):
        import os

        return subprocess.run([SCRIPT, *args], env=dict(os.environ, **self.env),
                              capture_output=True, text=True, timeout=timeout)

    def __enter__(self):
        started = self._script("start")
        if started.returncode != 0:
            self._script("stop")
            raise RuntimeError("the RabbitMQ cluster did not start (scripts/rabbit-cluster.sh "
                               "start): {}{}".format(started.stdout, started.stderr))
        self.amqp_uri = started.stdout.strip().splitlines()[-1]
        return self

    def __exit__(self, *exc):
        self._script("stop")

    def management(self, node):
        return "http://guest:guest@127.0.0.1:{}".format(self.base_port + NODES.index(node) + 10000)

    def api(self, path):
        """GET from the management API of any node still alive."""
        for node in NODES:
            if node in self.killed:
                continue
            try:
                response = requests.get(self.management(node) + "/api/" + path, timeout=10)
            except requests.RequestException:
                continue
            response.raise_for_status()
            return response.json()
        raise RuntimeError("no management API of the cluster answers")

    def queue_leader(self, name):
        """Node letter of the queue's Raft leader (quorum) or home node (classic)."""
        queue = self.api("queues/{}/{}".format(quote("/", safe=""), quote(name, safe="")))
        node_name = queue.get("leader") or queue["node"]
        return node_name.split("@")[0].rsplit("-", 1)[-1]

    def kill_node(self, node):
        self.killed.add(node)
        killed = self._script("kill-node", node)
        if killed.returncode != 0:
            raise RuntimeError("could not kill node {}: {}".format(node, killed.stderr))

    def queues_holding_messages(self, settle_seconds=20):
        """Queues still holding messages (ready or unacknowledged), ignoring RPC replies.

        The management API samples queue lengths every few seconds, so a
        non-empty answer is re-read until it settles.
        """
        deadline = time.monotonic() + settle_seconds
        while True:
            leftovers = {
                queue["name"]: queue.get("messages", 0) + queue.get("messages_unacknowledged", 0)
                for queue in self.api("queues/" + quote("/", safe=""))
                if not queue["name"].startswith("rpc.reply")}
            leftovers = {name: held for name, held in leftovers.items() if held}
            if not leftovers or time.monotonic() > deadline:
                return leftovers
            time.sleep(1)


def kill_leader_when(cluster, accepted_count, threshold, stats, note):
    """SIGKILL the job queue leader's node once ``threshold`` uploads were accepted."""
    while accepted_count() < threshold:
        time.sleep(0.2)
    leader = cluster.queue_leader(JOB_QUEUE)
    cluster.kill_node(leader)
    note["killed_node"] = leader
    note["killed_after_accepted"] = accepted_count()
    stats.bump("broker_restarts", "SIGKILL node imagepipe-" + leader)


def run(args):
    uploads = make_uploads(args.uploads, corrupt_every=0, seed=args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="broker-cluster-"))
    storage_root = workdir / "storage"
    stats = Stats()
    note = {}
    with BrokerCluster(workdir, args.base_port) as cluster:
        port = free_port()
        base_url = "http://127.0.0.1:{}".format(port)
        env = service_env(cluster.amqp_uri, storage_root, port, RPC_TIMEOUT=5, STALLED_AFTER=30,
                          SWEEP_INTERVAL=5, JOB_RETRY_DELAYS="1,2,5", JOB_MAX_ATTEMPTS=10,
                          JOB_QUEUE_TYPE="quorum", RPC_QUEUE_TYPE="quorum")
        imaging_env = dict(env, MAX_WORKERS="2")
        processes = [ServiceProcess("services.storage", env, workdir),
                     ServiceProcess("services.gateway", env, workdir)]
        processes += [ServiceProcess("services.imaging", imaging_env, workdir, "imaging-{}".format(i))
                      for i in range(args.imaging)]
        try:
            for process in processes:
                process.start()
            wait_for_http(base_url + "/health", timeout=60)
            time.sleep(1)  # let imaging bind its queues

            accepted = []
            started = time.monotonic()
            killer = threading.Thread(target=kill_leader_when, daemon=True, args=(
                cluster, lambda: len(accepted), args.uploads // 3, stats, note))
            killer.start()

            def client(item):
                index, (data, _expected) = item
                # uploads arrive steadily over --duration, so the node dies mid-stream
                time.sleep(max(0.0, started + index * args.duration / len(uploads) - time.monotonic()))
                image_id = upload_until_accepted(base_url, data, stats)
                accepted.append(image_id)
                return image_id

            with ThreadPoolExecutor(CLIENTS) as pool:
                ids = list(pool.map(client, enumerate(uploads)))
            uploads_done = time.monotonic()
            killer.join(timeout=60)
            final, pending = wait_until_finished(base_url, ids, args.drain_timeout)
            drained = time.monotonic()
            leftovers = cluster.queues_holding_messages()
            alive = [process.label for process in processes if process.alive]
        finally:
            for process in processes:
                process.terminate()
    audit = storage_audit(Blobs(storage_root))

    not_done = {image_id: body["status"] for image_id, body in final.items() if body["status"] != "done"}
    summary = {
        "uploads_accepted": len(ids),
        "distinct_images": len(set(ids)),
        "killed_node": note.get("killed_node"),
        "killed_after_accepted": note.get("killed_after_accepted"),
        "client_retries": stats.counts["client_retries"],
        "lost": len(pending),
        "not_done": len(not_done),
        "renditions": audit["renditions"],
        "duplicated_renditions": len(audit["duplicated"]),
        "orphaned_blobs": len(audit["orphans"]),
        "queues_not_empty": leftovers,
        "services_alive_at_end": len(alive),
        "seconds_uploading": round(uploads_done - started, 1),
        "seconds_to_drain": round(drained - uploads_done, 1),
        "logs": str(workdir),
    }
    summary["ok"] = (summary["killed_node"] is not None and not pending and not not_done
                     and not audit["duplicated"] and not audit["orphans"] and not leftovers
                     and len(alive) == len(processes))
    if not_done:
        summary["not_done_examples"] = {k: final[k].get("error") for k in list(not_done)[:5]}
    return summary


MEASURES = (
    "uploads_accepted", "distinct_images", "killed_node", "killed_after_accepted",
    "client_retries", "lost", "not_done", "renditions", "duplicated_renditions",
    "orphaned_blobs", "queues_not_empty", "services_alive_at_end", "seconds_uploading",
    "seconds_to_drain", "ok")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=40)
    parser.add_argument("--imaging", type=int, default=2, help="imaging processes")
    parser.add_argument("--base-port", type=int, default=5681, help="AMQP port of the first node")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds over which the uploads are spread")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON last")
    return parser.parse_args(argv)


def main(argv=None):
    summary = run(parse_args(argv))
    print_table(summary, MEASURES)
    if "--json" in (argv if argv is not None else sys.argv):
        print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
