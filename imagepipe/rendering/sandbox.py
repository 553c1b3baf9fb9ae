"""Confinement of a render worker: what a decoder exploit finds when it gets there.

Pillow's decoders are C code fed with strangers' bytes; the worker that runs
them is treated as the first thing an attacker would own.  Such a worker
should find no secrets, no network and no way up.  What is done, all of it
unprivileged (Linux, no root needed, no setuid helper):

* **Environment**: the worker is started with an allowlist of variables
  (``worker_environment``): no ``AMQP_URI``, ``API_KEYS``,
  ``WEBHOOK_SECRET``, ``AWS_*`` or anything else not on the list.
* **No network**: ``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` moves the worker
  into a network namespace of its own, which has nothing but a loopback
  interface that is down.  Needs user namespaces
  (``/proc/sys/user/max_user_namespaces`` > 0, and on Debian/Ubuntu kernels
  ``/proc/sys/kernel/unprivileged_userns_clone`` = 1); every capability the
  new namespace grants is dropped again at once.
* **No new privileges**: ``prctl(PR_SET_NO_NEW_PRIVS)``: no setuid binary
  or file capability can raise what the worker may do.
* **seccomp**: a filter (libseccomp through ``pyseccomp``) refuses with
  EPERM creating sockets, ``execve``, ``ptrace`` and the other calls a
  decoder never needs (``BLOCKED_SYSCALLS``).  Everything else is allowed:
  an allowlist of what CPython and Pillow's codecs call would break with
  each library update.

``confine(mode)`` applies what it can and returns a ``SandboxReport``
saying what is in force, checked from inside (a socket is tried).  With
``mode="require"`` anything missing raises ``SandboxUnavailable``.  Nothing
here imports nameko or Pillow.
"""
import ctypes
import errno
import os
import socket
from dataclasses import asdict, dataclass

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# What a worker keeps of its parent's environment (LC_* too): locale, time
# zone, temp dir, Python's own start-up switches, glibc malloc tuning.
ENVIRONMENT_ALLOWLIST = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR",
    "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
    "PYTHONHASHSEED", "PYTHONNOUSERSITE", "PYTHONIOENCODING",
    "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
})
_ALLOWED_PREFIXES = ("LC_",)

# Refused with EPERM by the seccomp filter.
BLOCKED_SYSCALLS = (
    # network: the worker talks over the socket pair it was started with
    "socket", "socketpair",
    # running other programs, or reaching into other processes
    "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev",
    # namespaces, mounts and kernel facilities a decoder never needs
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load",
)

SANDBOX_MODES = ("auto", "require", "off")


class SandboxUnavailable(RuntimeError):
    """``mode="require"`` and part of the sandbox could not be put in place."""


@dataclass(frozen=True)
class SandboxReport:
    """What confines a worker; each field is ``"on"`` or why it is not."""

    network: str
    no_new_privs: str
    seccomp: str

    @property
    def complete(self):
        return self.network == self.no_new_privs == self.seccomp == "on"

    def missing(self):
        return {name: state for name, state in asdict(self).items() if state != "on"}

    def as_dict(self):
        return asdict(self)


def worker_environment(environ):
    """The allowlisted part of ``environ``: what a render worker is started with."""
    return {name: value for name, value in environ.items()
            if name in ENVIRONMENT_ALLOWLIST or name.startswith(_ALLOWED_PREFIXES)}


def user_namespaces_allowed():
    """``(allowed, reason)`` from the kernel's switches; the real test is ``unshare`` itself."""
    for path, meaning in (("/proc/sys/user/max_user_namespaces", "max_user_namespaces"),
                          ("/proc/sys/kernel/unprivileged_userns_clone",
                           "unprivileged_userns_clone")):
        try:
            with open(path) as switch:
                value = int(switch.read().strip() or 0)
        except (OSError, ValueError):
            continue  # the switch does not exist on this kernel
        if value <= 0:
            return False, "{} is {} ({})".format(meaning, value, path)
    return True, ""


def confine(mode="auto"):
    """Apply the sandbox to this process (single-threaded, before any untrusted byte)."""
    if mode not in SANDBOX_MODES:
        raise ValueError("sandbox mode must be one of {}, not {!r}".format(", ".join(SANDBOX_MODES), mode))
    if mode == "off":
        return SandboxReport(network="off (RENDER_SANDBOX=off)", no_new_privs="off (RENDER_SANDBOX=off)",
                             seccomp="off (RENDER_SANDBOX=off)")
    report = SandboxReport(network=_isolate_network(), no_new_privs=_set_no_new_privs(),
                           seccomp=_install_seccomp())
    if mode == "require" and not report.complete:
        raise SandboxUnavailable("render worker sandbox incomplete: {}".format(report.missing()))
    return report


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _isolate_network():
    allowed, reason = user_namespaces_allowed()
    if not allowed:
        return "unavailable: " + reason
    if _libc().unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return "unavailable: unshare failed: {}".format(os.strerror(ctypes.get_errno()))
    dropped = _drop_capabilities()
    if dropped != "on":
        return "unavailable: " + dropped
    return _check_no_route()


def _drop_capabilities():
    # The new user namespace hands us every capability inside it; a decoder
    # exploit gets none of them.
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header = Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()
    if _libc().capset(ctypes.byref(header), data) != 0:
        return "capset failed: {}".format(os.strerror(ctypes.get_errno()))
    return "on"


def _check_no_route():
    """Confirm from inside: a TCP connection to loopback must find no network."""
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return "unavailable: cannot check ({})".format(exc)
    with probe:
        probe.settimeout(1)
        try:
            probe.connect(("127.0.0.1", 9))
        except OSError as exc:
            if exc.errno == errno.ENETUNREACH:
                return "on"
            return "unavailable: loopback answered ({})".format(errno.errorcode.get(exc.errno, exc))
    return "unavailable: a connection to 127.0.0.1 succeeded"


def _set_no_new_privs():
    if _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return "unavailable: prctl failed: {}".format(os.strerror(ctypes.get_errno()))
    return "on"


def _install_seccomp():
    try:
        import pyseccomp
    except (ImportError, RuntimeError) as exc:  # RuntimeError: libseccomp is not installed
        return "unavailable: {}".format(exc)
    refuse = pyseccomp.ERRNO(errno.EPERM)
    syscall_filter = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in BLOCKED_SYSCALLS:
        try:
            syscall_filter.add_rule(refuse, name)
        except (OSError, ValueError, RuntimeError):
            continue  # a call this architecture or libseccomp does not know
    try:
        syscall_filter.load()
    except OSError as exc:
        return "unavailable: seccomp_load failed: {}".format(exc)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    except PermissionError:
        return "on"
    return "unavailable: the filter did not refuse socket()"
