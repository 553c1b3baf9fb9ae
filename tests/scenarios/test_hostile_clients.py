"""Hostile clients against real `nameko run` processes: the gateway stays up and fair.

Each attack of issue 14, bounded in count and time, on loopback only, against
one stack (storage, gateway, imaging, webhooks) with short client limits.
During every attack ``/health`` and a normal upload must answer within 1 s
(``assert_responsive``), and afterwards the gateway is alive, holds no more
descriptors than before, and its memory stayed under a bound.  What a client
can do with API keys (other tenants' images, callbacks, cache headers) is in
tests/integration/test_tenants_and_limits.py; decoder and render-worker
attacks in tests/integration/test_decode_limits_http.py and
tests/unit/test_render_sandbox.py; webhook URL rules in tests/unit/test_webhooks.py.
"""
import io
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from harness import procstat
from harness.hostile import make_progressive_jpeg, repeat_last_scan
from harness.processes import ServiceProcess, free_port, service_env, wait_for_http
from harness.rabbit import ScratchVhost
from harness.waiting import wait_until
from tests.helpers import make_jpeg, make_png

pytestmark = [pytest.mark.slow]

RESPONSIVE_SECONDS = 1.0
LIMITS = dict(HTTP_SOCKET_TIMEOUT=2, HTTP_KEEPALIVE_TIMEOUT=2, HTTP_HEADER_TIMEOUT=3,
              HTTP_RATE_GRACE=2, HTTP_MIN_RATE=256 * 1024, RATE_LIMIT_UPLOADS="off",
              RATE_LIMIT_READS="off", LIVE_RECHECK_INTERVAL=1, MAX_UPLOAD_BYTES=30_000_000,
              MAX_PIXELS=60_000_000, WEBHOOK_ALLOW_PRIVATE="true", WEBHOOK_ALLOWED_PORTS="any",
              WEBHOOK_TIMEOUT=2, WEBHOOK_RETRY_DELAYS="1")


class Stack:
    def __init__(self, base_url, address, gateway, imaging, workdir):
        self.base_url, self.address, self.workdir = base_url, address, workdir
        self.gateway, self.imaging = gateway, imaging

    def url(self, path):
        return self.base_url + path

    def upload(self, data, name="a.jpg", **params):
        response = requests.post(self.url("/upload"), files={"image": (name, data)}, params=params,
                                 timeout=30)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def wait_done(self, image_id, timeout=60):
        def done():
            body = requests.get(self.url("/images/" + image_id), timeout=10).json()
            return body if body["status"] in ("done", "failed") else None
        return wait_until(done, timeout, "image {} to finish".format(image_id))

    def open_fds(self):
        return len(os.listdir("/proc/{}/fd".format(self.gateway.pid)))

    def rss_mb(self):
        return procstat.memory_mb(self.gateway.pid, "VmRSS")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    with ScratchVhost("hostile") as vhost:
        port = free_port()
        env = service_env(vhost.amqp_uri, workdir / "storage", port, **LIMITS)
        processes = [ServiceProcess("services." + name, env, workdir)
                     for name in ("storage", "gateway", "imaging", "webhooks")]
        try:
            for process in processes:
                process.start()
            base_url = "http://127.0.0.1:{}".format(port)
            wait_for_http(base_url + "/images", timeout=60)  # storage answers too
            yield Stack(base_url, ("127.0.0.1", port), processes[1], processes[2], workdir)
            assert processes[1].alive, processes[1].log_tail(40)
        finally:
            for process in processes:
                process.terminate()


@pytest.fixture
def baseline(stack):
    """The gateway before an attack: alive, responsive, its descriptors and memory."""
    assert stack.gateway.alive
    assert_responsive(stack)
    fds, rss = stack.open_fds(), stack.rss_mb()
    yield fds, rss
    assert stack.gateway.alive, stack.gateway.log_tail(40)
    # every connection the attack opened is gone again
    # (a few more than before: broker connections the attack made the gateway open)
    wait_until(lambda: stack.open_fds() <= fds + 20, 30,
               lambda: "descriptors back to {} (now {})".format(fds, stack.open_fds()))
    assert_responsive(stack)


def assert_responsive(stack):
    started = time.monotonic()
    assert requests.get(stack.url("/health"), timeout=5).status_code == 200
    health = time.monotonic() - started
    started = time.monotonic()
    response = requests.post(stack.url("/upload"), timeout=5, files={
        "image": ("probe.jpg", make_jpeg(64, 48, color=tuple(os.urandom(3))))})
    upload = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert health < RESPONSIVE_SECONDS and upload < RESPONSIVE_SECONDS, (health, upload)


def connect(stack):
    return socket.create_connection(stack.address, timeout=20)


def closed_by_server(sock):
    """What the server said before it closed the connection (b"" for nothing)."""
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def test_partial_headers_are_cut_and_hold_nothing(stack, baseline):
    sockets = [connect(stack) for _ in range(300)]
    for sock in sockets:
        sock.sendall(b"GET /images HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert_responsive(stack)
    answers = [closed_by_server(sock) for sock in sockets]  # each is closed by the server
    for sock in sockets:
        sock.close()
    assert all(answer == b"" or b" 408 " in answer.split(b"\r\n")[0] for answer in answers)
    assert any(b"request_timeout" in answer for answer in answers)


def test_bodies_that_never_come_hold_no_worker(stack, baseline):
    sockets = [connect(stack) for _ in range(10)]
    for sock in sockets:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 1000000\r\n\r\n\xff\xd8\xff\xe0")
    assert_responsive(stack)
    assert_responsive(stack)
    answers = [closed_by_server(sock) for sock in sockets]
    for sock in sockets:
        sock.close()
    assert all(b" 408 " in answer.split(b"\r\n")[0] and b"request_timeout" in answer
               for answer in answers), answers[0][:200]


def test_downloads_nobody_reads_are_streamed_cut_and_cost_little_memory(stack, baseline):
    noise = Image.frombytes("RGB", (3000, 2000), os.urandom(3000 * 2000 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG", compress_level=0)
    image_id = stack.upload(out.getvalue(), "noise.png")
    status = stack.wait_done(image_id)
    size = status["original"]["bytes"]
    assert size > 15_000_000
    _, rss_before = baseline
    sockets = [connect(stack) for _ in range(40)]
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall("GET /images/{}/original HTTP/1.1\r\nHost: x\r\n\r\n".format(image_id).encode())
    time.sleep(1)
    peak = stack.rss_mb()
    assert_responsive(stack)
    peak = max(peak, stack.rss_mb())
    # 40 whole originals in memory would be 40 x 18 MB; chunks are 256 KB
    assert peak - rss_before < 150, (rss_before, peak)
    for sock in sockets:  # below the minimum rate: the server drops them
        received = len(closed_by_server(sock))
        assert received < size
        sock.close()


def test_disconnected_status_streams_free_their_connections(stack, baseline):
    stack.imaging.signal(signal.SIGSTOP)  # the image stays pending: its streams stay open
    try:
        pending = stack.upload(make_jpeg(80, 60, color=(1, 2, 3)))
        streams = []
        for _ in range(100):
            sock = connect(stack)
            sock.sendall("GET /images/{}/events HTTP/1.1\r\nHost: x\r\n\r\n".format(
                pending).encode())
            assert b"event: status" in sock.recv(4096)
            streams.append(sock)
        for sock in streams:
            sock.close()  # the clients go away ...
        fds, _ = baseline  # ... and so do their connections, long before a stream's lifetime
        wait_until(lambda: stack.open_fds() <= fds + 20, 15,
                   lambda: "stream sockets released ({} open, {} before)".format(stack.open_fds(), fds))
    finally:
        stack.imaging.signal(signal.SIGCONT)


def test_a_scan_bomb_is_refused_at_upload(stack, baseline):
    bomb = repeat_last_scan(make_progressive_jpeg(7000, 7000), 2500)
    response = requests.post(stack.url("/upload"), files={"image": ("bomb.jpg", bomb)}, timeout=30)
    assert response.status_code == 413 and response.json()["error"] == "image_too_complex"
    assert_responsive(stack)


def test_reuploads_with_a_slow_callback_deliver_once(stack, baseline):
    posts = []

    class SlowReceiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(1.5)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:{}/hook".format(server.server_address[1])
        data = make_png(64, 64)
        image_id = stack.upload(data, "a.png", callback_url=url)
        stack.wait_done(image_id)
        for _ in range(20):
            assert stack.upload(data, "a.png", callback_url=url) == image_id
        assert_responsive(stack)
        wait_until(lambda: posts, 30, "the delivery")
        time.sleep(3)  # room for repeats, were there any
        assert len(posts) == 1
    finally:
        server.shutdown()


def test_trailing_bytes_are_not_stored_or_served(stack, baseline):
    png = make_png(64, 64)
    for index in range(10):
        image_id = stack.upload(png + os.urandom(2 * 1024 * 1024) + bytes([index]), "a.png")
        status = stack.wait_done(image_id)
        assert status["original"]["bytes"] == len(png)
        assert requests.get(stack.url(status["original"]["url"]), timeout=30).content == png


def test_out_of_descriptors_the_gateway_survives(stack, baseline):
    fds, _ = baseline
    pid = str(stack.gateway.pid)
    soft = subprocess.run(["prlimit", "--pid", pid, "--nofile", "--output=SOFT", "--noheadings"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the soft limit only: the hard one could not be raised again unprivileged
    subprocess.run(["prlimit", "--pid", pid, "--nofile={}:".format(fds + 40)], check=True)
    try:
        sockets = []
        for _ in range(80):  # more than the process can hold: accept() fails with EMFILE
            sockets.append(connect(stack))
            sockets[-1].sendall(b"GET /images HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for sock in sockets:
            closed_by_server(sock)
            sock.close()
        wait_until(lambda: "cannot accept connections (EMFILE)" in stack.gateway.log_tail(400), 30,
                   "the gateway to log EMFILE")
        assert stack.gateway.alive
    finally:
        subprocess.run(["prlimit", "--pid", pid, "--nofile={}:".format(soft)], check=True)
