"""The short chaos run (the full one: `python -m tests.scenarios.chaos`).

It restarts the local RabbitMQ with rabbitmqctl: without it the test fails
(a chaos run that skipped a fault it was asked for would prove nothing).
"""
import json
import shutil
import subprocess
import sys

import pytest

from harness.config import REPO_ROOT

pytestmark = [pytest.mark.chaos, pytest.mark.slow]
FAULTS = {"imaging_kills": 2, "storage_restarts": 1, "broker_restarts": 1, "gateway_kills": 1}


# the embedded default and the distributed parts; files + PostgreSQL is a
# `python -m tests.scenarios.chaos --postgres` away (kept out for make test's time)
@pytest.mark.parametrize("blobs, catalog", [("files", "sqlite"), ("s3", "postgresql")])
def test_short_chaos_run_loses_and_duplicates_nothing(blobs, catalog):
    assert shutil.which("rabbitmqctl"), (
        "the chaos run restarts the local RabbitMQ node with rabbitmqctl, which is not on PATH")
    result = subprocess.run(
        [sys.executable, "-m", "tests.scenarios.chaos", "--uploads", "60", "--imaging", "3",
         "--imaging-kills", str(FAULTS["imaging_kills"]),
         "--storage-restarts", str(FAULTS["storage_restarts"]),
         "--broker-restarts", str(FAULTS["broker_restarts"]),
         "--gateway-kills", str(FAULTS["gateway_kills"]),
         "--duration", "25", "--json"] + (["--postgres"] if catalog == "postgresql" else [])
        + (["--s3"] if blobs == "s3" else []),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    print(result.stdout[-3000:], result.stderr[-3000:])
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["blob_store"], summary["catalog"]) == (blobs, catalog)
    assert summary["uploads_accepted"] == 60
    # every fault asked for happened, as often as asked
    assert summary["faults_requested"] == FAULTS
    assert {fault: summary[fault] for fault in FAULTS} == FAULTS, summary["fault_errors"]
    assert summary["faults_missing"] == {} and summary["fault_errors"] == []
    assert summary["lost"] == 0
    assert summary["wrong_status"] == 0
    assert summary["duplicated_renditions"] == 0
    assert summary["orphaned_blobs"] == 0 and summary["temporary_files"] == 0
    assert summary["missing_blobs"] == 0
    assert summary["queues_not_empty"] == {}
    assert summary["max_shutdown_seconds"] <= 10
    assert summary["ok"] and result.returncode == 0
