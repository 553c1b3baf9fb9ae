"""Services as real OS processes: ``nameko run --config config.yaml services.X``.

Configured only through the environment, exactly as an operator runs them.
Each process is in a session of its own.
"""
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from harness import procstat
from harness.config import REPO_ROOT
from harness.waiting import wait_until

NAMEKO = str(Path(sys.executable).with_name("nameko"))
PR_SET_PDEATHSIG = 1
# settings of a developer's shell that must not leak into a test's services
INHERITED_SETTINGS = ("MAX_WORKERS", "STORAGE_DB", "API_KEYS", "PUBLIC_URL", "BLOB_STORE")


def free_ports(count):
    """``count`` distinct free TCP ports on the loopback (all bound at once, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port():
    return free_ports(1)[0]


def service_env(amqp_uri, storage_root, port, **overrides):
    """The environment of a service process: this one's, minus pipeline settings, plus these."""
    env = {key: value for key, value in os.environ.items() if key not in INHERITED_SETTINGS}
    env.update({
        "AMQP_URI": amqp_uri,
        "STORAGE_ROOT": str(storage_root),
        "WEB_SERVER_ADDRESS": "127.0.0.1:{}".format(port),
        "LOG_LEVEL": "INFO",
    })
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def _die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ServiceProcess:
    """One ``nameko run`` process; restartable; logs to ``<log_dir>/<label>.log``.

    ``die_with_parent``: the process gets SIGTERM when the *thread* that
    started it ends (Linux's parent-death signal follows threads), so a
    killed benchmark leaves no orphans; only for processes started from the
    main thread.
    """

    def __init__(self, module, env, log_dir, label=None, die_with_parent=False):
        self.die_with_parent = die_with_parent
        self.module = module
        self.env = env
        self.label = label or module.rsplit(".", 1)[-1]
        self.log_path = Path(log_dir) / "{}.log".format(self.label)
        self.process = None
        self.starts = 0

    @property
    def command(self):
        return [NAMEKO, "run", "--config", "config.yaml", self.module]

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None)
        self.starts += 1
        return self

    @property
    def pid(self):
        return self.process.pid

    @property
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def signal(self, signum):
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill(self):
        if self.alive:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout=15):
        """SIGTERM, as docker stop does; returns the seconds it took to exit (inf: killed)."""
        if not self.alive:
            return 0.0
        started = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return float("inf")
        return time.monotonic() - started

    def wait_or_kill(self, timeout):
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(0.1, timeout))
        except subprocess.TimeoutExpired:
            self.kill()

    def cpu_seconds(self):
        """Its own CPU and its children's (render workers, if any)."""
        return procstat.cpu_seconds(self.pid, with_children=True) or 0.0

    def peak_rss_mb(self):
        return procstat.memory_mb(self.pid, "VmHWM")

    def children_peak_rss_mb(self):
        """Peak RSS of each live child process (e.g. render workers)."""
        return [procstat.memory_mb(child, "VmHWM") or 0.0 for child in procstat.descendants(self.pid)]

    def log_tail(self, lines=15):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_for_http(url, timeout=30):
    def answers():
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, timeout, "{} answering 200".format(url), interval=0.2)
