"""Render workers as an attacker who owns one would find them: real processes, real kernel.

Network isolation needs user namespaces.  Whether the kernel allows them is
found out here independently of the code under test (by trying, in a child
process); where it does, the worker must report and be isolated, and these
tests fail otherwise.  Only a kernel that forbids namespaces skips them,
saying why.
"""
import ast
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagepipe.errors import ImageTooComplex, InvalidImage, TooManyPixels, UnsupportedFormat
from imagepipe.rendering import frames
from imagepipe.rendering.pool import RenderBudget, RenderPool, Worker, WorkerLost
from imagepipe.rendering.presets import Preset
from imagepipe.rendering.render import Rendition
from imagepipe.rendering.sandbox import worker_environment
from tests.helpers import REPO_ROOT, make_jpeg

PRESETS = [Preset("thumb", 64, 64)]
SECRETS = {"AMQP_URI": "amqp://user:hunter2@broker:5672/", "API_KEYS": "key-one,key-two",
           "WEBHOOK_SECRET": "whsec-123", "AWS_SECRET_ACCESS_KEY": "aws-secret",
           "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "STORAGE_DB": "postgresql://u:pw@db/images"}


def kernel_allows_network_namespaces():
    """``(allowed, reason)``, found by trying unshare in a throwaway child."""
    code = textwrap.dedent("""
        import ctypes, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x10000000 | 0x40000000) != 0:
            sys.exit(os.strerror(ctypes.get_errno()))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    return result.returncode == 0, result.stderr.strip()


@pytest.fixture(scope="module")
def sandboxed_pool():
    saved = {name: os.environ.get(name) for name in SECRETS}
    os.environ.update(SECRETS)  # what a worker would inherit from the imaging service
    pool = RenderPool(size=1, timeout=30)
    try:
        pool.render(make_jpeg(64, 64), PRESETS)
        yield pool
    finally:
        pool.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def worker_pid(pool):
    (worker,) = pool._workers
    return worker.process.pid


def proc_status(pid):
    with open("/proc/{}/status".format(pid)) as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def test_a_worker_sees_none_of_the_secrets(sandboxed_pool):
    with open("/proc/{}/environ".format(worker_pid(sandboxed_pool)), "rb") as environ:
        names = {entry.split(b"=", 1)[0].decode() for entry in environ.read().split(b"\0") if entry}
    assert set(SECRETS) <= set(os.environ)  # the parent has them ...
    assert not names & set(SECRETS)  # ... the worker does not
    assert "PYTHONPATH" in names and names <= set(worker_environment(dict.fromkeys(names, "")))


def test_the_allowlist_keeps_locale_and_drops_everything_else():
    kept = worker_environment({"LC_ALL": "C", "LANG": "C.UTF-8", "PATH": "/bin", "HOME": "/root",
                               "AWS_PROFILE": "x", "API_KEYS": "k", "SOMETHING_NEW": "y"})
    assert kept == {"LC_ALL": "C", "LANG": "C.UTF-8", "PATH": "/bin"}


def test_a_worker_has_no_new_privileges_and_a_seccomp_filter(sandboxed_pool):
    status = proc_status(worker_pid(sandboxed_pool))
    assert status["NoNewPrivs"] == "1"
    assert sandboxed_pool.sandbox.no_new_privs == "on"
    if sandboxed_pool.sandbox.seccomp != "on":
        pytest.fail("seccomp is not on: {}".format(sandboxed_pool.sandbox.seccomp))
    assert status["Seccomp"] == "2"  # filter mode
    assert status["CapEff"] == status["CapPrm"] == "0" * 16


def test_a_worker_cannot_open_a_tcp_connection(sandboxed_pool):
    allowed, reason = kernel_allows_network_namespaces()
    if not allowed:
        assert sandboxed_pool.sandbox.network.startswith("unavailable")
        pytest.skip("this kernel forbids user namespaces ({}); the pool reports {!r}".format(
            reason, sandboxed_pool.sandbox.network))
    assert sandboxed_pool.sandbox.network == "on"
    pid = worker_pid(sandboxed_pool)
    assert os.readlink("/proc/{}/ns/net".format(pid)) != os.readlink("/proc/self/ns/net")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        # the control: from our own namespace the listener is reachable ...
        assert connect_from_namespaces_of(None, port) == "connected"
        # ... from the worker's namespaces it is not
        assert connect_from_namespaces_of(pid, port) == "ENETUNREACH"


def connect_from_namespaces_of(pid, port):
    """Join ``pid``'s user and network namespaces in a fresh process and connect to loopback."""
    code = textwrap.dedent("""
        import ctypes, errno, os, socket, sys
        pid, port = sys.argv[1], int(sys.argv[2])
        if pid != "None":
            libc = ctypes.CDLL(None, use_errno=True)
            for kind, flag in (("user", 0x10000000), ("net", 0x40000000)):
                fd = os.open("/proc/{}/ns/{}".format(pid, kind), os.O_RDONLY)
                if libc.setns(fd, flag) != 0 and kind == "net":
                    sys.exit("setns {}: {}".format(kind, os.strerror(ctypes.get_errno())))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            print("connected")
        except OSError as exc:
            print(errno.errorcode.get(exc.errno, str(exc)))
    """)
    result = subprocess.run([sys.executable, "-c", code, str(pid), str(port)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_sandbox_off_is_reported_as_off():
    pool = RenderPool(size=1, timeout=30, sandbox="off")
    try:
        report = pool.start_worker()
        assert not report.complete and report.missing() == {
            "network": "off (RENDER_SANDBOX=off)", "no_new_privs": "off (RENDER_SANDBOX=off)",
            "seccomp": "off (RENDER_SANDBOX=off)"}
        assert proc_status(worker_pid(pool))["NoNewPrivs"] == "0"
    finally:
        pool.close()


# -- the frames a worker sends back: data only ------------------------------------

class Canary:
    """Unpickling this would create a file: proof that nothing is unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class FakeWorker:
    """A real ``Worker`` whose other end is this test, not a render process."""

    def __init__(self):
        self.ours, theirs = socket.socketpair()
        self.worker = Worker.__new__(Worker)
        self.worker.sock = theirs
        self.worker.max_frame = 1024 * 1024
        self.worker.sandbox = None
        self.worker.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def answer(self, *payloads):
        """Answer the job with the frames ``payloads`` (raw bytes each, length-prefixed here)."""
        def reply():
            header = self.ours.recv(frames.HEADER.size)
            size = frames.HEADER.unpack(header)[0]
            while size:
                size -= len(self.ours.recv(min(size, 65536)))
            for payload in payloads:
                self.ours.sendall(frames.HEADER.pack(len(payload)) + payload)
        thread = threading.Thread(target=reply, daemon=True)
        thread.start()
        try:
            return self.worker.render({"data": b"x", "presets": [], "options": {}, "limits": {}},
                                      RenderBudget(ceiling=10))
        finally:
            thread.join(10)
            self.ours.close()
            self.worker.kill()


def packed(message):
    return msgpack.packb(message, use_bin_type=True)


GOOD_RENDITION = {"preset": "thumb", "data": b"RIFF", "format": "webp", "mime_type": "image/webp",
                  "width": 4, "height": 3, "seconds": 0.01}


def test_a_well_formed_answer_is_rebuilt_as_renditions():
    result = FakeWorker().answer(packed({"pixels": 12}), packed({"renditions": [GOOD_RENDITION]}))
    assert result == [Rendition(**GOOD_RENDITION)]


@pytest.mark.parametrize("code, error", [
    ("invalid_image", InvalidImage), ("too_many_pixels", TooManyPixels),
    ("image_too_complex", ImageTooComplex), ("unsupported_format", UnsupportedFormat),
    ("memory_error", MemoryError), ("render_error", frames.RenderError)])
def test_errors_come_back_typed(code, error):
    with pytest.raises(error, match="^the message$") as caught:
        FakeWorker().answer(packed({"error": {"code": code, "message": "the message"}}))
    assert type(caught.value) is error


def test_a_pickle_in_a_frame_is_never_unpickled(tmp_path):
    canary = tmp_path / "unpickled"
    payload = pickle.dumps((True, [Canary(str(canary))]))
    with pytest.raises(WorkerLost, match="broke the protocol"):
        FakeWorker().answer(payload)
    with pytest.raises(WorkerLost, match="broke the protocol"):
        FakeWorker().answer(packed({"pixels": 1}), packed({"renditions": payload}))
    assert not canary.exists()


@pytest.mark.parametrize("frame", [
    packed({"pixels": 1, "renditions": []}),             # two keys
    packed({"pickle": b""}),                              # unknown key
    packed({"pixels": -1}), packed({"pixels": True}), packed({"pixels": "1"}),
    packed({"error": {"code": "internal_error", "message": "x"}}),  # not a worker's error
    packed({"error": {"code": "invalid_image"}}),
    packed([1, 2]), packed(None), b"\xc1", b"",
    msgpack.packb({"pixels": msgpack.ExtType(1, b"\x00")}),
    msgpack.packb({b"pixels": 1}, use_bin_type=True),        # a bytes key
])
def test_malformed_frames_kill_the_worker(frame):
    with pytest.raises(WorkerLost, match="broke the protocol"):
        FakeWorker().answer(frame)


def test_an_oversized_frame_is_refused_before_it_is_read():
    fake = FakeWorker()
    fake.worker.max_frame = 1000
    with pytest.raises(WorkerLost, match="a frame of 1001 bytes"):
        fake.answer(b"\x00" * 1001)


@pytest.mark.parametrize("rendition", [
    dict(GOOD_RENDITION, width="4"), dict(GOOD_RENDITION, data="text"),
    dict(GOOD_RENDITION, evil=1), {key: GOOD_RENDITION[key] for key in ("preset", "data")},
    dict(GOOD_RENDITION, seconds=[1]), dict(GOOD_RENDITION, height=True)])
def test_renditions_of_the_wrong_shape_are_refused(rendition):
    with pytest.raises(frames.ProtocolViolation):
        frames.records_from([rendition], Rendition)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=200) | msgpack_values.map(packed)
       | st.dictionaries(st.sampled_from(["pixels", "renditions", "error", "hello"]), msgpack_values,
                         min_size=1, max_size=1).map(packed))
def test_the_frame_parser_only_ever_returns_data_or_refuses(payload):
    allowed = (frames.ProtocolViolation, InvalidImage, TooManyPixels, UnsupportedFormat,
               MemoryError, frames.RenderError)
    try:
        key, value = frames.expect(payload, "pixels", "renditions")
        if key == "pixels":
            assert isinstance(frames.pixels_from(value), int)
        else:
            assert all(isinstance(item, Rendition) for item in frames.records_from(value, Rendition))
    except allowed:
        pass


def test_frames_round_trip_what_a_worker_sends():
    error = frames.error_frame(ImageTooComplex("JPEG has more than 100 scans"))
    with pytest.raises(ImageTooComplex, match="100 scans"):
        frames.expect(frames.pack(error)[frames.HEADER.size:], "renditions")
    assert frames.error_frame(KeyError("x"))["error"]["code"] == "render_error"
    assert frames.error_frame(MemoryError())["error"]["code"] == "memory_error"



def test_require_starts_a_fully_sandboxed_worker_or_none():
    from imagepipe.rendering.pool import WorkerUnavailable

    allowed, reason = kernel_allows_network_namespaces()
    pool = RenderPool(size=1, timeout=30, sandbox="require")
    try:
        if allowed:
            assert pool.start_worker().complete
            assert pool.render(make_jpeg(64, 64), PRESETS)[0].width == 64
        else:
            with pytest.raises(WorkerUnavailable, match="exited with status 3"):
                pool.start_worker()
    finally:
        pool.close()


def test_where_user_namespaces_are_off_the_worker_says_so_and_keeps_the_rest():
    """A kernel that forbids namespaces, made here: a user namespace whose own limit is 0.

    (max_user_namespaces is per user namespace; the host's is untouched.)
    """
    allowed, reason = kernel_allows_network_namespaces()
    if not allowed:
        pytest.skip("this kernel forbids user namespaces already ({})".format(reason))
    code = textwrap.dedent("""
        import ctypes, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.unshare(0x10000000) == 0, os.strerror(ctypes.get_errno())
        with open("/proc/sys/user/max_user_namespaces", "w") as limit:
            limit.write("0")
        from imagepipe.rendering.pool import RenderPool, WorkerUnavailable
        pool = RenderPool(size=1)
        print(pool.start_worker().as_dict())
        pool.close()
        try:
            RenderPool(size=1, sandbox="require").start_worker()
        except WorkerUnavailable as exc:
            print("require:", exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=str(REPO_ROOT))
    assert result.returncode == 0, result.stderr
    report, refused = result.stdout.strip().splitlines()
    assert ast.literal_eval(report) == {
        "network": "unavailable: max_user_namespaces is 0 (/proc/sys/user/max_user_namespaces)",
        "no_new_privs": "on", "seccomp": "on"}
    assert refused.startswith("require: a render worker could not start")
    assert "sandbox incomplete" in result.stderr  # logged at the first worker
