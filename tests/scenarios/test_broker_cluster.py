"""Broker fail-over on a local three-node cluster (the script: `python -m tests.scenarios.broker_cluster`)."""
import json
import os
import subprocess
import sys

import pytest

from harness.config import REPO_ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
RABBIT_BIN = os.environ.get("RABBIT_BIN", "/usr/lib/rabbitmq/bin")


def test_killing_the_job_queue_leaders_node_loses_and_duplicates_nothing():
    if not os.access(os.path.join(RABBIT_BIN, "rabbitmq-server"), os.X_OK):
        pytest.fail("this test starts its own RabbitMQ nodes and needs the rabbitmq-server "
                    "package ({}/rabbitmq-server not found)".format(RABBIT_BIN))
    result = subprocess.run(
        [sys.executable, "-m", "tests.scenarios.broker_cluster", "--uploads", "40",
         "--imaging", "2", "--duration", "20", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    print(result.stdout[-3000:], result.stderr[-3000:])
    assert result.returncode == 0 or result.stdout.strip(), (
        "the cluster scenario crashed: " + result.stderr[-2000:])
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["killed_node"] in ("a", "b", "c")
    assert 0 < summary["killed_after_accepted"] < 40  # the node died mid-stream
    assert summary["uploads_accepted"] == summary["distinct_images"] == 40
    assert summary["lost"] == 0 and summary["not_done"] == 0
    assert summary["renditions"] == 80 and summary["duplicated_renditions"] == 0
    assert summary["orphaned_blobs"] == 0
    assert summary["queues_not_empty"] == {}
    assert summary["services_alive_at_end"] == 4
    assert summary["ok"] and result.returncode == 0
