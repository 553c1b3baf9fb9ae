"""imagepipe.heap: big buffers reuse heap memory instead of fresh page faults."""
import os
import platform
import subprocess
import sys

from tests.helpers import REPO_ROOT

GLIBC = platform.libc_ver()[0] == "glibc"

# One message's buffers, 50 times over: the AMQP frames (27 x 128 KB), the
# body joined from them, a decoded copy; then the minor page faults it took.
CHURN = """
import resource, sys
from imagepipe import heap
applied = heap.keep_big_buffers_on_heap() if sys.argv[1] == "tuned" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(50):
    frames = [bytes([i % 256]) * 131072 for _ in range(27)]
    body = b"".join(frames)
    del frames
    decoded = bytes(bytearray(body))
    del body, decoded
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def churn(mode, **env):
    result = subprocess.run([sys.executable, "-c", CHURN, mode], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True, env=dict(os.environ, **env))
    applied, faults = result.stdout.split()
    return applied == "True", int(faults)


def test_tuned_process_reuses_memory_for_big_buffers():
    applied, tuned_faults = churn("tuned")
    _, default_faults = churn("default")
    assert applied is GLIBC
    if GLIBC:
        # by default the buffers are fresh memory every time: ~2,500 faults
        # per message (128,957 measured); tuned, the heap keeps them (2,591)
        assert default_faults > 50 * 1000
        assert tuned_faults < default_faults / 10


def test_operator_settings_win():
    applied, _ = churn("tuned", MALLOC_MMAP_THRESHOLD_="1048576")
    assert applied is False
