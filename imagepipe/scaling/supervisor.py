"""The imaging processes of the scaler: started, stopped gracefully, replaced, never orphaned.

Each process is ``nameko run --config <config> services.imaging``, the
command an operator runs by hand, with this process's environment plus
``MAX_WORKERS`` (its AMQP prefetch).  Its output goes where the scaler's goes.

* Stopping is SIGTERM: nameko stops consuming, lets running jobs finish and
  exits; one that is still there after ``stop_timeout`` is SIGKILLed, and
  RabbitMQ hands its unacknowledged jobs to another consumer.
* No orphans: every process gets SIGTERM from the kernel when the scaler
  dies, however it dies (``PR_SET_PDEATHSIG``).  Linux sends it when the
  *thread* that forked the child ends, so only the main thread starts
  processes.  Each child also runs in a session of its own, so a Ctrl-C
  in the terminal reaches the scaler alone, which then stops them in order.
"""
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def nameko_command(config_path):
    """``nameko run --config <config_path> services.imaging`` with this interpreter's nameko."""
    beside = Path(sys.executable).with_name("nameko")
    nameko = str(beside) if beside.exists() else (which("nameko") or "nameko")
    return [nameko, "run", "--config", str(config_path), "services.imaging"]


def _die_with(parent_pid):
    """preexec_fn: SIGTERM when the parent's forking thread ends; give up if it already has."""
    def preexec():
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(1)
    return preexec


@dataclass(eq=False)
class Child:
    number: int
    process: subprocess.Popen
    started: float
    stopping_since: float = None
    exit_code: int = field(default=None)

    @property
    def pid(self):
        return self.process.pid

    def __str__(self):
        return "imaging-{} (pid {})".format(self.number, self.pid)


class Supervisor:
    def __init__(self, command, env, stop_timeout, cwd=None, clock=time.monotonic):
        self.command = list(command)
        self.env = dict(env)
        self.stop_timeout = stop_timeout
        self.cwd = cwd
        self.clock = clock
        self.children = []
        self._numbers = 0

    @property
    def running(self):
        """Processes taking work (started, not being stopped)."""
        return [child for child in self.children if child.stopping_since is None]

    @property
    def stopping(self):
        return [child for child in self.children if child.stopping_since is not None]

    def start(self):
        if not _on_main_os_thread():
            raise RuntimeError("imaging processes are started from the main thread only "
                               "(the parent-death signal follows the forking thread)")
        self._numbers += 1
        process = subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with(os.getpid()))
        child = Child(self._numbers, process, self.clock())
        self.children.append(child)
        return child

    def stop_one(self):
        """SIGTERM the newest running process; returns it (None if none runs)."""
        running = self.running
        if not running:
            return None
        child = running[-1]
        self._terminate(child)
        return child

    def _terminate(self, child):
        child.stopping_since = self.clock()
        _signal(child, signal.SIGTERM)

    def reap(self):
        """Forget processes that exited; SIGKILL stopping ones past the grace period.

        Returns the processes that exited by themselves (not asked to stop),
        with ``exit_code`` set: the scaler replaces them.
        """
        now = self.clock()
        died = []
        for child in list(self.children):
            code = child.process.poll()
            if code is None:
                if child.stopping_since is not None and now - child.stopping_since > self.stop_timeout:
                    log.warning("%s still running %.0f s after SIGTERM: SIGKILL (its jobs go back "
                                "to the queue)", child, now - child.stopping_since)
                    _signal(child, signal.SIGKILL)
                continue
            child.exit_code = code
            self.children.remove(child)
            if child.stopping_since is None:
                died.append(child)
            else:
                log.info("%s stopped in %.1f s (exit status %s)", child, now - child.stopping_since, code)
        return died

    def shutdown(self):
        """SIGTERM every process, wait up to the grace period, SIGKILL the rest."""
        for child in self.running:
            self._terminate(child)
        deadline = self.clock() + self.stop_timeout
        while self.children and self.clock() < deadline:
            self.reap()
            time.sleep(0.1)
        for child in self.children:
            _signal(child, signal.SIGKILL)
            child.process.wait()
        self.children = []


def _on_main_os_thread():
    """The OS thread, not Python's idea of it (eventlet patches threading)."""
    _pid, _, thread_id = os.readlink("/proc/thread-self").partition("/task/")
    return int(thread_id) == os.getpid()


def _signal(child, signum):
    try:
        child.process.send_signal(signum)
    except ProcessLookupError:
        pass
