"""Completion webhooks end to end: real services, real HTTP to a real receiver.

The receiver is a threaded ``http.server`` on 127.0.0.1, so these tests run
with ``WEBHOOK_ALLOW_PRIVATE`` on -- except the one that checks the SSRF rule
refuses exactly that address when it is off.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.waiting import wait_until
from imagepipe.webhooks.signing import verify_signature
from tests.helpers import make_jpeg, make_png, wait_for_status

SECRET = "test-webhook-secret"


class Receiver:
    """Records every POST; answers ``fail_first`` of them with 500, each after ``delay`` s."""

    def __init__(self, fail_first=0, delay=0.0):
        self.fail_first = fail_first
        self.delay = delay
        self.requests = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body, "at": time.monotonic()})
                    failing = len(receiver.requests) <= receiver.fail_first
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.in_flight -= 1
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path="/hook"):
        return "http://127.0.0.1:{}{}".format(self.server.server_address[1], path)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError("receiver got {} requests, expected {}".format(len(self.requests), count))


@pytest.fixture
def pipeline_config(pipeline_config):
    pipeline_config.update({
        "WEBHOOK_ALLOW_PRIVATE": True, "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_RETRY_DELAYS": "0.3,0.6,0.9", "WEBHOOK_TIMEOUT": 2,
        "WEBHOOK_ALLOWED_PORTS": "1024-65535",  # the receiver's ephemeral port
    })
    return pipeline_config


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


def assert_signed(request):
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert verify_signature(SECRET, headers["X-Imagepipe-Timestamp"], request["body"],
                            headers["X-Imagepipe-Signature"])
    # a tampered body or a replayed old timestamp does not verify
    assert not verify_signature(SECRET, headers["X-Imagepipe-Timestamp"], request["body"] + b" ",
                                headers["X-Imagepipe-Signature"])
    assert not verify_signature(SECRET, headers["X-Imagepipe-Timestamp"], request["body"],
                                headers["X-Imagepipe-Signature"], now=time.time() + 3600)


def test_done_image_is_posted_once_signed(pipeline, web, receiver):
    response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(800, 600))},
                        data={"callback_url": receiver.url()})
    assert response.status_code == 202, response.text
    image_id = response.json()["id"]
    [request] = receiver.wait_for(1)
    status = wait_for_status(web, image_id)
    time.sleep(1.5)  # room for a duplicate, which must not come
    assert len(receiver.requests) == 1
    assert request["path"] == "/hook"
    assert_signed(request)
    assert request["headers"]["X-Imagepipe-Event"] == "image.done"
    delivered = json.loads(request["body"])
    assert delivered == status  # the same JSON GET /images/<id> answers
    assert delivered["status"] == "done" and set(delivered["variants"]) == {"thumb", "medium"}


def test_failing_receiver_is_retried_with_backoff(pipeline, web):
    with Receiver(fail_first=2) as receiver:
        response = web.post("/upload?callback_url=" + receiver.url("/flaky"),
                            data=make_png(120, 80), headers={"Content-Type": "image/png"})
        assert response.status_code == 202, response.text
        requests = receiver.wait_for(3)
        time.sleep(1.5)
        assert len(receiver.requests) == 3  # two failures, one success, then nothing
    gaps = [later["at"] - earlier["at"] for earlier, later in zip(requests, requests[1:])]
    # back-off 0.3 s then 0.6 s (RabbitMQ TTLs; generous upper bounds for a busy machine)
    assert 0.25 <= gaps[0] < 3 and 0.55 <= gaps[1] < 4, gaps
    assert len({request["headers"]["X-Imagepipe-Delivery"] for request in requests}) == 1
    for request in requests:
        assert_signed(request)
        assert json.loads(request["body"])["status"] == "done"


def test_corrupt_image_delivers_failed(pipeline, web, receiver):
    truncated = make_jpeg(1200, 900)[:5000]
    response = web.post("/upload", files={"image": ("bad.jpg", truncated)},
                        data={"callback_url": receiver.url()})
    assert response.status_code == 202, response.text
    [request] = receiver.wait_for(1)
    delivered = json.loads(request["body"])
    assert delivered["id"] == response.json()["id"]
    assert delivered["status"] == "failed" and delivered["error"]
    assert request["headers"]["X-Imagepipe-Event"] == "image.failed"
    assert_signed(request)


def test_reupload_of_a_done_image_with_a_new_callback_delivers_at_once(pipeline, web, receiver):
    data = make_jpeg(300, 200, color=(9, 9, 9))
    image_id = web.post("/upload", files={"image": ("a.jpg", data)}).json()["id"]
    assert wait_for_status(web, image_id)["status"] == "done"
    assert receiver.requests == []  # no callback_url, no delivery
    response = web.post("/upload", files={"image": ("a.jpg", data)},
                        data={"callback_url": receiver.url("/second")})
    assert response.status_code == 202 and response.json()["status"] == "done"
    [request] = receiver.wait_for(1)
    assert request["path"] == "/second"
    assert json.loads(request["body"])["status"] == "done"


def test_a_deleted_image_is_announced_to_its_callback(pipeline, web, receiver):
    image_id = web.post("/upload", files={"image": ("a.jpg", make_jpeg(320, 240))},
                        data={"callback_url": receiver.url("/hook")}).json()["id"]
    [done] = receiver.wait_for(1)
    assert json.loads(done["body"])["status"] == "done"
    assert web.delete("/images/" + image_id).status_code == 204
    deleted = receiver.wait_for(2)[1]
    time.sleep(1.5)  # room for a duplicate, which must not come
    assert len(receiver.requests) == 2
    assert deleted["path"] == "/hook"
    assert deleted["headers"]["X-Imagepipe-Event"] == "image.deleted"
    assert_signed(deleted)
    body = json.loads(deleted["body"])
    assert set(body) == {"id", "status", "deleted_at"}  # nothing of the erased image but its id
    assert (body["id"], body["status"]) == (image_id, "deleted")
    assert body["deleted_at"] >= json.loads(done["body"])["updated_at"]
    assert deleted["headers"]["X-Imagepipe-Delivery"] != done["headers"]["X-Imagepipe-Delivery"]


@pytest.mark.parametrize("url, code", [
    ("not a url", "invalid_callback_url"),
    ("http://", "invalid_callback_url"),
    ("ftp://example.com/hook", "callback_url_forbidden"),
])
def test_malformed_callback_urls_are_refused(pipeline, web, url, code):
    response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64))},
                        data={"callback_url": url})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == code


def test_private_callback_is_refused_when_not_allowed(runner_factory, pipeline_config, web, receiver):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService

    pipeline_config["WEBHOOK_ALLOW_PRIVATE"] = "false"
    runner_factory(pipeline_config, GatewayService, ImagingService, StorageService).start()
    for url in (receiver.url(), "http://localhost:9/x", "http://[::ffff:127.0.0.1]/x"):
        response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64))},
                            data={"callback_url": url})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "callback_url_forbidden"
    assert web.get("/images").json()["images"] == []
    originals = Path(pipeline_config["STORAGE_ROOT"]) / "originals"
    assert not originals.exists() or not any(path.is_file() for path in originals.rglob("*"))
    assert receiver.requests == []


def waiting_messages(config, queue_name):
    """Messages ready in the queue; 0 while nobody has declared it yet."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(config["AMQP_URI"]) as conn:
        try:
            return conn.channel().queue_declare(queue_name, passive=True).message_count
        except NotFound:
            return 0


def test_a_waiting_retry_survives_the_webhooks_service(runner_factory, pipeline_config, web):
    """The retry waits in RabbitMQ, not in a process: a new webhooks process delivers it."""
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService
    from services.webhooks import WebhookService

    pipeline_config["WEBHOOK_RETRY_DELAYS"] = "3"
    first = runner_factory(pipeline_config, GatewayService, ImagingService, StorageService,
                           WebhookService)
    first.start()
    with Receiver(fail_first=1) as receiver:
        response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(200, 200))},
                            data={"callback_url": receiver.url()})
        assert response.status_code == 202, response.text
        receiver.wait_for(1)
        # the failed attempt is settled once its retry waits in RabbitMQ; killing
        # before that would leave the attempt leased (a different test's case)
        wait_until(lambda: waiting_messages(pipeline_config, "webhooks.deliveries.retry.3s"),
                   message="the retry waiting in webhooks.deliveries.retry.3s")
        first.kill()  # like SIGKILL: nothing is shut down cleanly
        assert len(receiver.requests) == 1
        runner_factory(pipeline_config, WebhookService, StorageService).start()
        requests = receiver.wait_for(2)
        assert requests[1]["at"] - requests[0]["at"] >= 2.5
        assert json.loads(requests[1]["body"])["status"] == "done"
        assert_signed(requests[1])


def test_reuploads_never_repeat_a_delivery(pipeline, web, receiver):
    data = make_jpeg(320, 240, color=(1, 2, 3))
    upload = lambda url: web.post("/upload", files={"image": ("a.jpg", data)}, data={"callback_url": url})
    image_id = upload(receiver.url("/first")).json()["id"]
    receiver.wait_for(1)
    assert wait_for_status(web, image_id)["status"] == "done"
    for _ in range(5):  # the same URL again and again: nothing more
        assert upload(receiver.url("/first")).status_code == 202
    second = upload(receiver.url("/second"))  # a new URL gets the finished status once
    assert second.status_code == 202 and second.json()["status"] == "done"
    receiver.wait_for(2)
    for _ in range(5):
        assert upload(receiver.url("/second")).status_code == 202
    time.sleep(2)  # room for duplicates (retries would come within 1.8 s), which must not come
    assert [request["path"] for request in receiver.requests] == ["/first", "/second"]
    assert len({request["headers"]["X-Imagepipe-Delivery"] for request in receiver.requests}) == 2


def test_deliveries_to_one_host_are_capped_and_the_rest_wait(runner_factory, pipeline_config, web):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService
    from services.webhooks import WebhookService

    pipeline_config["WEBHOOK_MAX_PER_HOST"] = 1
    runner_factory(pipeline_config, GatewayService, ImagingService, StorageService,
                   WebhookService).start()
    with Receiver(delay=0.5) as slow:
        ids = [web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64, color=(shade * 60, 0, 0)))},
                        data={"callback_url": slow.url("/slow")}).json()["id"] for shade in range(4)]
        assert len(set(ids)) == 4  # four images (the same bytes would be one image)
        delivered = slow.wait_for(4, timeout=40)
        time.sleep(1)
        assert len(slow.requests) == 4  # each once
        assert slow.most_in_flight == 1
    assert {json.loads(request["body"])["id"] for request in delivered} == set(ids)


def test_deliveries_are_made_by_the_webhooks_service_not_the_gateway(runner_factory, pipeline_config,
                                                                     web, receiver):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService
    from services.webhooks import WebhookService

    without_webhooks = runner_factory(pipeline_config, GatewayService, ImagingService, StorageService)
    without_webhooks.start()
    data = make_jpeg(100, 100, color=(4, 5, 6))
    image_id = web.post("/upload", files={"image": ("a.jpg", data)}).json()["id"]
    assert wait_for_status(web, image_id)["status"] == "done"
    response = web.post("/upload", files={"image": ("a.jpg", data)}, data={"callback_url": receiver.url()})
    assert response.status_code == 202
    time.sleep(1)
    assert receiver.requests == []  # the gateway only queued the request
    runner_factory(pipeline_config, WebhookService, StorageService).start()
    [request] = receiver.wait_for(1)
    assert json.loads(request["body"])["id"] == image_id


def test_callback_ports_and_private_names_are_refused_with_generic_answers(
        runner_factory, pipeline_config, web):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService

    pipeline_config["WEBHOOK_ALLOW_PRIVATE"] = "false"
    pipeline_config.pop("WEBHOOK_ALLOWED_PORTS")  # the default: 80 and 443
    runner_factory(pipeline_config, GatewayService, ImagingService, StorageService).start()

    def refusal(url):
        response = web.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64))},
                            data={"callback_url": url})
        assert response.status_code == 400, response.text
        return response.json()

    for port in (22, 6379, 8080):
        assert refusal("http://93.184.216.34:{}/hook".format(port)) == {
            "error": "callback_url_forbidden",
            "message": "callback_url port {} is not allowed; allowed: 80, 443".format(port)}
    answers = {host: refusal("http://{}/".format(host))
               for host in ("vm", "localhost", "no-such-host.invalid")}
    for host, answer in answers.items():
        assert answer == {"error": "callback_url_forbidden", "message": (
            "callback_url host {!r} is not a public internet address; only public addresses "
            "are allowed".format(host))}
        assert "127.0.0.1" not in answer["message"] and "loopback" not in answer["message"]
    assert refusal("http://[fec0::1]/")["error"] == "callback_url_forbidden"
    assert web.get("/images").json()["images"] == []
