"""A pool of render worker processes with per-job time and memory limits.

Pillow's decoders are C code fed with bytes from strangers.  A decode that
runs away in time or memory, or crashes outright, must fail that one job --
not the imaging process and every other job it holds.  So rendering happens
in long-lived child processes (``python -m imagepipe.rendering.worker``): each
takes one job at a time over a socket, with an address-space limit; a worker
that times out, crashes, runs out of memory or breaks the protocol is killed
and replaced.

A worker is also treated as the first thing a decoder exploit would own:
it starts with an allowlisted environment (no secrets), confines itself
(``imagepipe.rendering.sandbox``: no network, no new privileges, seccomp)
before it reads any image, and answers in plain data
(``imagepipe.rendering.frames``), never pickle.

Time: a render may take ``RenderBudget.seconds(pixels)`` -- seconds per
megapixel of the image (width x height x frames, which the worker reports
from the header before decoding), at least a floor, at most the ceiling
(``RENDER_TIMEOUT``) -- so a tiny file cannot buy a minute of CPU.

Processes also give real parallelism on every core, whatever the GIL does,
while the imaging service's event loop only waits on sockets (cooperative
once eventlet has patched them inside ``nameko run``; ordinary blocking
sockets elsewhere).
"""
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from imagepipe.errors import InvalidImage, TooManyPixels
from imagepipe.rendering import frames
from imagepipe.rendering.render import Rendition
from imagepipe.rendering.sandbox import SandboxReport, worker_environment
from imagepipe.rendering.structure import DecodeLimits

log = logging.getLogger(__name__)

# Python and Pillow start in well under a second; a loaded host gets room.
SPAWN_TIMEOUT = 30.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
HELLO_FIELDS = tuple(field.name for field in fields(SandboxReport))


class WorkerLost(Exception):
    """The worker died, was killed or broke the protocol; the job's outcome is unknown."""


class WorkerUnavailable(RuntimeError):
    """A worker could not be started (not the image's fault: the job is retried)."""


@dataclass(frozen=True)
class RenderBudget:
    """How long one render may take: per megapixel, between a floor and a ceiling."""

    ceiling: float
    per_megapixel: float = None  # None: every render gets the ceiling
    floor: float = 5.0

    def header_seconds(self):
        """Until the worker has read the header and reported the pixel count."""
        return min(self.ceiling, self.floor) if self.per_megapixel else self.ceiling

    def seconds(self, pixels):
        if not self.per_megapixel:
            return self.ceiling
        return min(self.ceiling, max(self.floor, pixels / 1e6 * self.per_megapixel))


class RenderPool:
    def __init__(self, size=2, timeout=60.0, memory_limit_mb=1024, render_kwargs=None, nice=0,
                 seconds_per_megapixel=None, seconds_min=5.0, decode_limits=DecodeLimits(),
                 sandbox="auto"):
        self.size = size
        self.timeout = timeout  # the ceiling of every render's budget
        self.seconds_per_megapixel = seconds_per_megapixel
        self.seconds_min = seconds_min
        self.memory_limit_mb = memory_limit_mb
        self.nice = nice
        self.sandbox_mode = sandbox
        self.render_kwargs = dict(render_kwargs or {})
        self.decode_limits = decode_limits
        self.sandbox = None  # the SandboxReport of the newest worker
        self._idle = queue.LifoQueue()
        self._workers = set()
        for _ in range(size):
            self._idle.put(None)  # a slot; the process starts on first use

    @property
    def budget(self):
        return RenderBudget(self.timeout, self.seconds_per_megapixel, self.seconds_min)

    def render(self, data, presets, **options):
        """``render.render(data, presets, **options)`` in a worker; ``options``
        (e.g. ``focus``) add to the pool's own ``render_kwargs``."""
        request = {"data": data, "presets": [asdict(preset) for preset in presets],
                   "options": dict(self.render_kwargs, **options),
                   "limits": asdict(self.decode_limits)}
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive:
                worker = self._spawn()
            return worker.render(request, self.budget)
        except WorkerLost as exc:
            self._retire(worker)
            worker = None
            raise _as_image_error(exc) from None
        except MemoryError:
            self._retire(worker)  # its heap may be in any state
            worker = None
            raise TooManyPixels("decoding the image needs more than {} MB".format(
                self.memory_limit_mb)) from None
        finally:
            self._idle.put(worker)

    def start_worker(self):
        """Start one worker now (not on first use); return its ``SandboxReport``."""
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive:
                worker = self._spawn()
            return worker.sandbox
        finally:
            self._idle.put(worker)

    def close(self):
        for worker in list(self._workers):
            self._retire(worker)

    def _spawn(self):
        worker = Worker(self.memory_limit_mb, self.nice, self.sandbox_mode)
        try:
            worker.start()
        except WorkerLost as exc:
            worker.kill()
            raise WorkerUnavailable("a render worker could not start: {}".format(exc)) from None
        if worker.sandbox != self.sandbox:  # the first worker, or the kernel changed its mind
            if worker.sandbox.complete:
                log.info("render workers are sandboxed: no network, no new privileges, seccomp")
            else:
                log.warning("render worker sandbox incomplete (RENDER_SANDBOX=%s): %s",
                            self.sandbox_mode, worker.sandbox.missing())
        self.sandbox = worker.sandbox
        self._workers.add(worker)
        return worker

    def _retire(self, worker):
        if worker is not None:
            worker.kill()
            self._workers.discard(worker)


def _as_image_error(exc):
    # A worker only dies on a job by the job's doing: timeouts, crashes and
    # garbage answers come from the image, so they fail it permanently.
    return InvalidImage("the image could not be decoded safely: {}".format(exc))


class Worker:
    """One render process, spoken to over a socket pair (its stdin and stdout).

    A socket rather than pipes because socket timeouts and broken-connection
    errors behave the same with and without eventlet's patching, and a
    timeout on every send and receive is what bounds a job.
    """

    def __init__(self, memory_limit_mb, nice=0, sandbox="auto"):
        # a reply cannot be bigger than the memory the worker may use to build it
        self.max_frame = (memory_limit_mb + 1) * 1024 * 1024
        self.sandbox = None
        self.sock, theirs = socket.socketpair()
        environment = worker_environment(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, (_PACKAGE_ROOT, environment.get("PYTHONPATH"))))
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "imagepipe.rendering.worker",
                 str(memory_limit_mb), str(nice), sandbox],
                stdin=theirs.fileno(), stdout=theirs.fileno(), close_fds=True,
                env=environment, cwd="/")

    @property
    def alive(self):
        return self.process.poll() is None

    def start(self):
        """Wait for the worker's hello: the sandbox it is in."""
        self.sandbox = SandboxReport(**self._exchange(
            None, SPAWN_TIMEOUT, "hello", lambda value: frames.hello_from(value, HELLO_FIELDS)))

    def render(self, request, budget):
        """Send one job; the pixel count from its header sets its deadline."""
        started = time.monotonic()
        pixels = self._exchange(frames.pack({"render": request}), budget.header_seconds(),
                                "pixels", frames.pixels_from, started)
        return self._exchange(None, budget.seconds(pixels), "renditions",
                              lambda value: frames.records_from(value, Rendition), started)

    def _exchange(self, frame, allowed, expected, parse, started=None):
        """Send ``frame`` (if any), then receive the ``expected`` answer within ``allowed`` s."""
        deadline = (time.monotonic() if started is None else started) + allowed
        try:
            if frame is not None:
                self._send(frame, deadline)
            return parse(frames.expect(self._receive_frame(deadline), expected)[1])
        except (socket.timeout, TimeoutError):
            self.kill()
            raise WorkerLost("gave up after {:g} s".format(allowed)) from None
        except frames.ProtocolViolation as exc:
            self.kill()
            raise WorkerLost("the render worker broke the protocol ({})".format(exc)) from None
        except (OSError, EOFError):
            raise WorkerLost(self._exit_reason()) from None

    def _receive_frame(self, deadline):
        size = frames.HEADER.unpack(self._receive(frames.HEADER.size, deadline))[0]
        if size > self.max_frame:
            raise frames.ProtocolViolation("a frame of {} bytes".format(size))
        return self._receive(size, deadline)

    def _send(self, data, deadline):
        self.sock.settimeout(_remaining(deadline))
        self.sock.sendall(data)

    def _receive(self, size, deadline):
        buffer = bytearray(size)
        view = memoryview(buffer)
        while view:
            self.sock.settimeout(_remaining(deadline))
            received = self.sock.recv_into(view)
            if not received:
                raise EOFError
            view = view[received:]
        return bytes(buffer)

    def kill(self):
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel owes us this
            pass
        self.sock.close()

    def _exit_reason(self):
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return "the decoder stopped answering"
        if code < 0:
            return "the decoder was killed by {}".format(signal.Signals(-code).name)
        return "the decoder exited with status {}".format(code)


def _remaining(deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining
