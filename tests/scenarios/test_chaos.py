"""The short chaos run (the full one: `python -m tests.scenarios.chaos`)."""
import json
import shutil
import subprocess
import sys

import pytest

from harness.config import REPO_ROOT

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_short_chaos_run_loses_and_duplicates_nothing(catalog):
    # restarting the broker needs the local node's rabbitmqctl (CI has it)
    broker_restarts = "1" if shutil.which("rabbitmqctl") else "0"
    result = subprocess.run(
        [sys.executable, "-m", "tests.scenarios.chaos", "--uploads", "60", "--imaging", "3",
         "--imaging-kills", "2", "--storage-restarts", "1", "--broker-restarts", broker_restarts,
         "--duration", "25", "--json"] + (["--postgres"] if catalog == "postgresql" else []),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    print(result.stdout[-3000:], result.stderr[-3000:])
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["catalog"] == catalog
    assert summary["uploads_accepted"] == 60
    assert summary["imaging_kills"] == 2 and summary["storage_restarts"] == 1
    assert summary["lost"] == 0
    assert summary["wrong_status"] == 0
    assert summary["duplicated_renditions"] == 0
    assert summary["orphaned_blobs"] == 0 and summary["temporary_files"] == 0
    assert summary["queues_not_empty"] == {}
    assert summary["max_shutdown_seconds"] <= 10
    assert summary["ok"] and result.returncode == 0
