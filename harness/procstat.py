"""CPU time and memory of a process and its children, from /proc (Linux).

The imaging service may render in child processes (a render-worker pool), so
a service's CPU is its own plus its descendants' (and its reaped children's).
"""
import os

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
