"""A pool of render worker processes with per-job time and memory limits.

Pillow's decoders are C code fed with bytes from strangers.  A decode that
runs away in time or memory, or crashes outright, must fail that one job --
not the imaging process and every other job it holds.  So rendering happens
in long-lived child processes (``python -m imagepipe.rendering.worker``): each
takes one job at a time over a pipe, with an address-space limit; a worker
that times out, crashes or runs out of memory is killed and replaced.

Processes also give real parallelism on every core, whatever the GIL does,
while the imaging service's event loop only waits on sockets (cooperative
once eventlet has patched them inside ``nameko run``; ordinary blocking
sockets elsewhere).
"""
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import time

from imagepipe.errors import InvalidImage, TooManyPixels

HEADER = struct.Struct("!Q")


class WorkerLost(Exception):
    """The worker died or was killed; the job's outcome is unknown."""


class RenderPool:
    def __init__(self, size=2, timeout=60.0, memory_limit_mb=1024, render_kwargs=None, nice=0):
        self.size = size
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self.nice = nice
        self.render_kwargs = dict(render_kwargs or {})
        self._idle = queue.LifoQueue()
        self._workers = set()
        for _ in range(size):
            self._idle.put(None)  # a slot; the process starts on first use

    def start_workers(self, count):
        """Start up to ``count`` workers now instead of on first use.

        A worker needs ~0.1 s to start (Python, Pillow); started beside the
        service's own start-up, that is off the first job's path -- a cold
        start's.
        """
        slots = []
        for _ in range(min(count, self.size)):
            try:
                slots.append(self._idle.get_nowait())
            except queue.Empty:  # the rest are rendering
                break
        for slot in reversed(slots):
            self._idle.put(slot if slot is not None else self._spawn())

    def render(self, data, presets):
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive:
                worker = self._spawn()
            return worker.call(("render", data, list(presets), self.render_kwargs), self.timeout)
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

    def close(self):
        for worker in list(self._workers):
            self._retire(worker)

    def _spawn(self):
        worker = Worker(self.memory_limit_mb, self.nice)
        self._workers.add(worker)
        return worker

    def _retire(self, worker):
        if worker is not None:
            worker.kill()
            self._workers.discard(worker)


def _as_image_error(exc):
    # A worker only dies on a job by the job's doing: timeouts and crashes
    # come from the image, so they fail it permanently with the reason.
    return InvalidImage("the image could not be decoded safely: {}".format(exc))


class Worker:
    """One render process, spoken to over a socket pair (its stdin and stdout).

    A socket rather than pipes because socket timeouts and broken-connection
    errors behave the same with and without eventlet's patching, and a
    timeout on every send and receive is what bounds a job.
    """

    def __init__(self, memory_limit_mb, nice=0):
        self.sock, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "imagepipe.rendering.worker", str(memory_limit_mb), str(nice)],
                stdin=theirs.fileno(), stdout=theirs.fileno(), close_fds=True)

    @property
    def alive(self):
        return self.process.poll() is None

    def call(self, request, timeout):
        deadline = time.monotonic() + timeout
        payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._send(HEADER.pack(len(payload)) + payload, deadline)
            size = HEADER.unpack(self._receive(HEADER.size, deadline))[0]
            ok, value = pickle.loads(self._receive(size, deadline))
        except (socket.timeout, TimeoutError):
            self.kill()
            raise WorkerLost("gave up after {:g} s".format(timeout)) from None
        except (OSError, EOFError):
            raise WorkerLost(self._exit_reason()) from None
        if ok:
            return value
        raise value

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
