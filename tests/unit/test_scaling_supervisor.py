"""The scaler's process supervisor with real child processes (stand-ins for nameko; no broker)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import eventlet
import pytest

from harness import procstat
from harness.config import REPO_ROOT

from imagepipe.scaling.supervisor import Supervisor, nameko_command

# exits 0 shortly after SIGTERM, like nameko finishing its jobs
GRACEFUL = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.2), sys.exit(0)))
    print("up", flush=True)
    while True:
        time.sleep(1)
""")
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)\n"


def command(script):
    return [sys.executable, "-c", script]


def wait_until(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("{} not reached within {} s".format(what, timeout))


def handles_sigterm(child):
    """The child has installed its SIGTERM handler (or ignores it): /proc's signal masks."""
    with open("/proc/{}/status".format(child.pid)) as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    bit = 1 << (signal.SIGTERM - 1)
    return any(int(fields[name], 16) & bit for name in ("SigCgt", "SigIgn"))


def started(*children):
    for child in children:
        wait_until(lambda: handles_sigterm(child), what="{} ready".format(child))


@pytest.fixture
def supervisor():
    made = []

    def make(script, stop_timeout=30.0):
        made.append(Supervisor(command(script), os.environ, stop_timeout))
        return made[-1]

    yield make
    for each in made:
        for child in each.children:
            child.process.kill()
            child.process.wait()


def test_stop_is_sigterm_and_a_stopped_process_is_not_reported_dead(supervisor):
    processes = supervisor(GRACEFUL)
    first, second = processes.start(), processes.start()
    started(first, second)
    assert processes.running == [first, second]
    assert processes.stop_one() is second  # the newest goes first
    assert processes.running == [first] and processes.stopping == [second]
    wait_until(lambda: not processes.reap() and second not in processes.children,
               what="the stopped process reaped")
    assert second.exit_code == 0
    assert processes.running == [first] and first.process.poll() is None


def test_a_process_that_dies_is_reported_for_replacement(supervisor):
    processes = supervisor(GRACEFUL)
    child = processes.start()
    child.process.send_signal(signal.SIGKILL)
    died = []
    wait_until(lambda: died.extend(processes.reap()) or died, what="the death noticed")
    assert died == [child] and child.exit_code == -signal.SIGKILL
    assert processes.children == []


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(supervisor):
    processes = supervisor(STUBBORN, stop_timeout=0.5)
    child = processes.start()
    started(child)
    processes.stop_one()
    wait_until(lambda: not processes.reap() and not processes.children, what="SIGKILL")
    assert child.exit_code == -signal.SIGKILL


def test_shutdown_stops_everything(supervisor):
    processes = supervisor(GRACEFUL)
    children = [processes.start() for _ in range(3)]
    started(*children)
    processes.shutdown()
    assert processes.children == []
    assert [child.process.returncode for child in children] == [0, 0, 0]


def test_processes_are_started_from_the_main_thread_only(supervisor):
    processes = supervisor(GRACEFUL)
    errors = []

    def start():
        try:
            processes.start()
        except RuntimeError as exc:
            errors.append(exc)

    # a real OS thread: under `nameko test` threading.Thread is a green thread
    thread = eventlet.patcher.original("threading").Thread(target=start)
    thread.start()
    thread.join()
    assert errors and "main thread" in str(errors[0])
    assert processes.children == []


def test_no_orphans_when_the_scaler_is_killed(tmp_path):
    """SIGKILL the supervising process: the kernel SIGTERMs its children."""
    pid_file = tmp_path / "children"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, sys, time
        from imagepipe.scaling.supervisor import Supervisor
        processes = Supervisor([sys.executable, "-c", sys.argv[1]], os.environ, 30)
        pids = [processes.start().pid for _ in range(2)]
        open(sys.argv[2], "w").write(" ".join(map(str, pids)))
        time.sleep(600)
    """), GRACEFUL, str(pid_file)], cwd=REPO_ROOT)
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="children started")
        children = [int(pid) for pid in pid_file.read_text().split()]
        assert all(procstat.alive(pid) for pid in children)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: not any(procstat.alive(pid) for pid in children), what="children gone")
    finally:
        parent.kill()
        parent.wait()


def test_the_command_is_the_one_operators_run():
    assert nameko_command("config.yaml")[1:] == ["run", "--config", "config.yaml", "services.imaging"]
    assert os.path.basename(nameko_command("config.yaml")[0]) == "nameko"
