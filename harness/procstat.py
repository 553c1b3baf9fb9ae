"""CPU time and memory of a process and its children, from /proc (Linux).

The imaging service may render in child processes (a render-worker pool), so
a service's CPU is its own plus its descendants' (and its reaped children's).
"""
import os
import threading

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open("/proc/{}/stat".format(pid)) as stat:
        return stat.read().rsplit(")", 1)[1].split()  # fields from 3 (state) on


def cpu_seconds(pid, with_children=False):
    """User + system CPU seconds of every thread of ``pid``; None if gone.

    ``with_children`` adds reaped children (cutime/cstime) and live descendants.
    """
    try:
        fields = _stat_fields(pid)
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    seconds = ticks / _TICK
    if with_children:
        seconds += sum(cpu_seconds(child) or 0.0 for child in descendants(pid))
    return seconds


def descendants(pid):
    """PIDs of every live descendant of ``pid``."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat_fields(entry)[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def memory_mb(pid, field="VmHWM"):
    """A /proc/<pid>/status memory field in MB (VmHWM = peak RSS); None if gone."""
    try:
        with open("/proc/{}/status".format(pid)) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def alive(pid):
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False

def children(pid):
    """PIDs of the live direct children of ``pid`` (of any of its threads)."""
    found = []
    try:
        tasks = os.listdir("/proc/{}/task".format(pid))
    except OSError:
        return found
    for task in tasks:
        try:
            with open("/proc/{}/task/{}/children".format(pid, task)) as listing:
                found.extend(int(child) for child in listing.read().split())
        except OSError:
            continue
    return found


def command_line(pid):
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


RENDER_WORKER_MODULE = "imagepipe.rendering.worker"


def render_workers(pid):
    """PIDs of the live render worker processes of the process ``pid`` (its children)."""
    return [child for child in children(pid) if RENDER_WORKER_MODULE in command_line(child)]


class PeakMemory:
    """Peak RSS of the processes ``select()`` returns, sampled every ``interval`` s.

    ``with PeakMemory(select) as peaks: ...`` then ``peaks.mb`` is
    {pid: peak RSS in MB} of every process seen.  Each sample reads the
    process's own high-water mark (VmHWM), so nothing is missed but growth
    after the last sample of a process that then exits.  Samples run in a
    thread (a green one under eventlet: the sampled work is in other processes).
    """

    def __init__(self, select, interval=0.05):
        self.select = select
        self.interval = interval
        self.mb = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        for pid in self.select():
            peak = memory_mb(pid, "VmHWM")
            if peak is not None:
                self.mb[pid] = max(peak, self.mb.get(pid, 0.0))

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()
