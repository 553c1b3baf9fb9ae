"""imagepipe.webhooks: the SSRF guard, signing, the POST and the retry decision.

Name resolution is injected (``resolve=``), never patched globally; the
sender tests POST to a real local http.server.
"""
import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imagepipe.configvalues import PortRanges
from imagepipe.errors import CallbackUrlForbidden, InvalidCallbackUrl, UnresolvableCallbackHost
from imagepipe.webhooks.delivery import Attempt, HostSlots, WebhookSender, deliver, pinned_request
from imagepipe.webhooks.signing import delivery_id, signature, verify_signature
from imagepipe.webhooks.urls import (
    SPECIAL_PURPOSE, callback_url_from, check_callback_url, embedded_ipv4, forbidden_reason)

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


def resolver(*addresses):
    calls = []

    def resolve(host, port):
        calls.append((host, port))
        return list(addresses)

    resolve.calls = calls
    return resolve


def no_dns(host, port):
    raise AssertionError("literal addresses must not be resolved")


# -- the SSRF guard: literal addresses ----------------------------------------

@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "0.0.0.0", "100.64.0.1", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.7",
    "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "[::1]", "[::]", "[fe80::1]", "[fc00::1]", "[fd12:3456::1]", "[ff02::1]", "[ff0e::1]",
    "[2001:db8::1]", "[::ffff:127.0.0.1]", "[::ffff:10.1.2.3]", "[::ffff:169.254.169.254]",
    "[::ffff:7f00:1]", "[2002:7f00:1::]", "[2002:a00:1::1]", "[64:ff9b::7f00:1]",
    "[64:ff9b::a9fe:a9fe]", "[::127.0.0.1]", "[fe80::1%25eth0]",
])
def test_non_public_literal_addresses_are_forbidden(host):
    with pytest.raises(CallbackUrlForbidden):
        check_callback_url("http://{}/hook".format(host), resolve=no_dns)


@pytest.mark.parametrize("host", [PUBLIC_V4, "8.8.8.8", "[{}]".format(PUBLIC_V6),
                                  "[::ffff:8.8.8.8]", "[2002:808:808::1]", "[64:ff9b::808:808]"])
def test_public_literal_addresses_are_allowed(host):
    target = check_callback_url("https://{}:8443/hook?x=1".format(host), resolve=no_dns,
                                allowed_ports=PortRanges([(8443, 8443)]))
    assert target.port == 8443 and target.scheme == "https"
    assert len(target.addresses) == 1


def test_allow_private_lets_everything_through_but_still_parses():
    target = check_callback_url("http://127.0.0.1:9000/x", allow_private=True, resolve=no_dns,
                                allowed_ports=None)
    assert target.addresses == ("127.0.0.1",) and target.port == 9000
    with pytest.raises(CallbackUrlForbidden):
        check_callback_url("file:///etc/passwd", allow_private=True, resolve=no_dns)
    with pytest.raises(InvalidCallbackUrl):
        check_callback_url("http://", allow_private=True, resolve=no_dns)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "gopher://example.com/", "ftp://example.com/x", "javascript:alert(1)",
    "data:text/plain,hi", "dict://example.com:11211/",
])
def test_other_schemes_are_forbidden(url):
    with pytest.raises(CallbackUrlForbidden):
        check_callback_url(url, resolve=resolver(PUBLIC_V4))


@pytest.mark.parametrize("url", [
    "", "hook", "/relative/path", "http://", "https:///path", "http://exa mple.com/",
    "http://example.com/\n", "http://example.com:99999/", "http://example.com:0/",
    "http://example.com:port/", "http://[::1/", "http://" + "a" * 2100 + ".com/", None, 42,
    # inet_aton spellings of 127.0.0.1 that getaddrinfo would accept
    "http://2130706433/", "http://0x7f000001/", "http://127.1/", "http://0177.0.0.1/",
])
def test_malformed_urls_are_invalid(url):
    with pytest.raises(InvalidCallbackUrl):
        check_callback_url(url, resolve=resolver(PUBLIC_V4))


# -- the SSRF guard: names --------------------------------------------------------

def test_a_name_is_judged_by_every_address_it_resolves_to():
    resolve = resolver(PUBLIC_V4, PUBLIC_V6)
    target = check_callback_url("http://hooks.example.com/x", resolve=resolve)
    assert target.host == "hooks.example.com" and target.port == 80
    assert target.addresses == (PUBLIC_V4, PUBLIC_V6)
    assert resolve.calls == [("hooks.example.com", 80)]
    # one private address among public ones is enough to refuse (round-robin DNS)
    with pytest.raises(CallbackUrlForbidden) as refused:
        check_callback_url("http://hooks.example.com/x", resolve=resolver(PUBLIC_V4, "10.0.0.5"))
    assert "10.0.0.5" not in refused.value.message and PUBLIC_V4 not in refused.value.message


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:192.168.0.1", "169.254.169.254",
                                     "fe80::1%eth0"])
def test_a_name_resolving_to_a_private_address_is_forbidden(address):
    with pytest.raises(CallbackUrlForbidden):
        check_callback_url("https://rebind.example.net/hook", resolve=resolver(address))


def test_a_name_that_does_not_resolve_answers_like_a_private_one():
    def nxdomain(host, port):
        raise OSError(-2, "Name or service not known")

    with pytest.raises(UnresolvableCallbackHost) as missing:
        check_callback_url("http://vm/", resolve=nxdomain)
    with pytest.raises(CallbackUrlForbidden) as private:
        check_callback_url("http://vm/", resolve=resolver("127.0.0.1"))
    assert type(private.value) is CallbackUrlForbidden
    # the client cannot tell an internal name from a missing one
    assert (missing.value.code, missing.value.message) == (private.value.code, private.value.message)
    assert private.value.message == (
        "callback_url host 'vm' is not a public internet address; only public addresses are allowed")
    with pytest.raises(UnresolvableCallbackHost):
        check_callback_url("http://empty.example/", resolve=resolver())


def test_trailing_dot_and_case_do_not_change_the_host():
    resolve = resolver(PUBLIC_V4)
    target = check_callback_url("HTTPS://Hooks.Example.COM./x", resolve=resolve)
    assert target.scheme == "https" and target.host == "hooks.example.com"


def test_forbidden_reason_unwraps_embedded_ipv4():
    assert embedded_ipv4(ipaddress.ip_address("::ffff:1.2.3.4")) == ipaddress.ip_address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("2002:102:304::")) == ipaddress.ip_address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::102:304")) == ipaddress.ip_address("1.2.3.4")
    assert forbidden_reason(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback"
    assert forbidden_reason(ipaddress.ip_address("169.254.1.1")) == "link-local"
    assert forbidden_reason(ipaddress.ip_address("100.64.1.1")) == "special-purpose 100.64.0.0/10"
    assert forbidden_reason(ipaddress.ip_address(PUBLIC_V4)) is None


# -- where the URL comes from ------------------------------------------------------

def test_callback_url_from_query_or_form():
    assert callback_url_from({}, {}) is None
    assert callback_url_from({"callback_url": "http://a/"}, {}) == "http://a/"
    assert callback_url_from({}, {"callback_url": "http://b/"}) == "http://b/"
    assert callback_url_from({"callback_url": "http://a/"}, {"callback_url": "http://a/"}) == "http://a/"
    with pytest.raises(InvalidCallbackUrl):
        callback_url_from({"callback_url": "http://a/"}, {"callback_url": "http://b/"})
    with pytest.raises(InvalidCallbackUrl):
        callback_url_from({"callback_url": "  "}, {})


# -- signing ------------------------------------------------------------------------

def test_signature_covers_timestamp_and_body():
    body = b'{"id":"x"}'
    expected = "sha256=" + __import__("hmac").new(
        b"key", b"1700000000." + body, "sha256").hexdigest()
    assert signature("key", 1700000000, body) == expected
    assert verify_signature("key", "1700000000", body, expected, now=1700000100)
    assert not verify_signature("key", "1700000001", body, expected, now=1700000100)  # other time
    assert not verify_signature("other", "1700000000", body, expected, now=1700000100)
    assert not verify_signature("key", "1700000000", body, expected, now=1700000000 + 301)  # stale
    assert not verify_signature("key", "soon", body, expected)
    assert not verify_signature("key", "1700000000", body, None, now=1700000000)


# -- pinning the vetted address ------------------------------------------------------

def test_pinned_request_keeps_the_host_name_in_the_host_header():
    target = check_callback_url("https://hooks.example.com:8443/a/b?c=d#frag",
                                resolve=resolver(PUBLIC_V6), allowed_ports=None)
    url, host = pinned_request(target, target.addresses[0])
    assert url == "https://[{}]:8443/a/b?c=d".format(PUBLIC_V6)
    assert host == "hooks.example.com:8443"
    target = check_callback_url("http://hooks.example.com", resolve=resolver(PUBLIC_V4))
    assert pinned_request(target, PUBLIC_V4) == ("http://{}/".format(PUBLIC_V4), "hooks.example.com")


# -- the POST, against a real local server -------------------------------------------

class Recorder(BaseHTTPRequestHandler):
    answers = []
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.seen.append((self.path, dict(self.headers), body))
        status, headers = Recorder.answers.pop(0) if Recorder.answers else (200, {})
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Recorder.answers, Recorder.seen = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:{}".format(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


STATUS = {"id": "ab" * 16, "status": "done", "updated_at": "2026-01-01T00:00:00.000+00:00"}


def test_sender_posts_signed_json(server):
    sender = WebhookSender(timeout=2, secret="k", allow_private=True, clock=lambda: 1700000000,
                           allowed_ports=None)
    result = sender.send(server + "/hook?x=1", STATUS)
    assert result == Attempt(True, "HTTP 200")
    [(path, headers, body)] = Recorder.seen
    assert path == "/hook?x=1"
    assert json.loads(body) == STATUS
    assert headers["X-Imagepipe-Timestamp"] == "1700000000"
    assert headers["X-Imagepipe-Signature"] == signature("k", 1700000000, body)
    assert headers["X-Imagepipe-Event"] == "image.done"
    assert headers["X-Imagepipe-Delivery"] == delivery_id(STATUS, server + "/hook?x=1")


def test_sender_without_secret_sends_no_signature(server):
    assert WebhookSender(timeout=2, allow_private=True, allowed_ports=None).send(server, STATUS).ok
    headers = Recorder.seen[0][1]
    assert "X-Imagepipe-Signature" not in headers and "X-Imagepipe-Timestamp" not in headers


def test_sender_does_not_follow_redirects(server):
    Recorder.answers = [(302, {"Location": "http://169.254.169.254/latest/meta-data"})]
    result = WebhookSender(timeout=2, allow_private=True, allowed_ports=None).send(server, STATUS)
    assert not result.ok and "302" in result.detail and not result.permanent
    assert len(Recorder.seen) == 1


def test_sender_reports_errors_and_refusals_without_raising(server):
    Recorder.answers = [(503, {})]
    assert WebhookSender(timeout=2, allow_private=True, allowed_ports=None).send(server, STATUS) == Attempt(False, "HTTP 503")
    # re-checked at delivery: private now forbidden, permanently
    refused = WebhookSender(timeout=2, allow_private=False, allowed_ports=None).send(server, STATUS)
    assert not refused.ok and refused.permanent
    assert len(Recorder.seen) == 1
    # nobody listening: a transient failure
    closed = WebhookSender(timeout=2, allow_private=True, allowed_ports=None).send("http://127.0.0.1:9/", STATUS)
    assert not closed.ok and not closed.permanent and "ConnectionError" in closed.detail


def test_sender_connects_to_the_vetted_address_not_a_second_lookup(server):
    port = int(server.rsplit(":", 1)[1])
    answers = iter([["127.0.0.1"], ["203.0.113.50"]])  # a rebinding DNS server
    sender = WebhookSender(timeout=2, allow_private=True, resolve=lambda host, p: next(answers),
                           allowed_ports=None)
    assert sender.send("http://hooks.test:{}/pinned".format(port), STATUS).ok
    path, headers, _ = Recorder.seen[0]
    assert path == "/pinned" and headers["Host"] == "hooks.test:{}".format(port)


# -- the retry decision ------------------------------------------------------------------

RECORD = {"id": "cd" * 16, "status": "done", "updated_at": "t", "callback_url": "http://h/x"}
DELAYS = (1.0, 5.0, 30.0)


def sent(result, log):
    def send(url, body):
        log.append(url)
        return result
    return send


def test_deliver_retries_with_growing_attempts_then_gives_up():
    calls = []
    failing = sent(Attempt(False, "HTTP 500"), calls)
    message = {"id": RECORD["id"], "status": "done"}
    delays = []
    for _ in DELAYS:
        decision = deliver(message, RECORD, RECORD, failing, DELAYS)
        assert decision.outcome == "retry"
        delays.append(decision.retry_delay)
        message = decision.retry_message
    assert delays == list(DELAYS)
    assert message["webhook"] == {"attempt": 3, "callback_url": "http://h/x"}
    assert deliver(message, RECORD, RECORD, failing, DELAYS).outcome == "gave_up"
    assert calls == ["http://h/x"] * 4


def test_deliver_gives_up_at_once_on_a_permanent_failure():
    decision = deliver({"id": "x"}, RECORD, RECORD, sent(Attempt(False, "forbidden", True), []), DELAYS)
    assert decision.outcome == "gave_up"


@pytest.mark.parametrize("record, message, reason", [
    (dict(RECORD, callback_url=None), {}, "no callback_url"),
    (dict(RECORD, status="processing"), {}, "image is processing"),
    (dict(RECORD, status="pending"), {}, "image is pending"),
    (RECORD, {"webhook": {"attempt": 1, "callback_url": "http://old/"}}, "replaced"),
])
def test_deliver_skips_what_is_not_due(record, message, reason):
    calls = []
    decision = deliver(dict(message, id=RECORD["id"]), record, record, sent(Attempt(True, ""), calls), DELAYS)
    assert decision.outcome == "skipped" and reason in decision.detail
    assert calls == []


def test_deliver_succeeds_on_a_2xx():
    decision = deliver({"id": "x"}, RECORD, RECORD, sent(Attempt(True, "HTTP 204"), []), DELAYS)
    assert (decision.outcome, decision.retry_message) == ("delivered", None)


def test_the_readme_verification_snippet_accepts_our_signatures():
    import re
    import time

    from tests.helpers import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    snippet = re.search(r"Verifying, in Python:\n\n```python\n(.*?)```", readme, re.S).group(1)
    namespace = {}
    exec(snippet, namespace)  # the code as documented, nothing else
    verify = namespace["verify"]
    body = b'{"id":"x","status":"done"}'
    timestamp = str(int(time.time()))
    headers = {"X-Imagepipe-Timestamp": timestamp,
               "X-Imagepipe-Signature": signature("s3cret", timestamp, body)}
    assert verify(b"s3cret", headers, body)
    assert not verify(b"other", headers, body)
    assert not verify(b"s3cret", headers, body + b" ")
    stale = str(int(time.time()) - 3600)
    assert not verify(b"s3cret", {"X-Imagepipe-Timestamp": stale,
                                  "X-Imagepipe-Signature": signature("s3cret", stale, body)}, body)


# -- every special-purpose range, and ports -----------------------------------------

@pytest.mark.parametrize("network", [str(network) for network in SPECIAL_PURPOSE])
def test_every_special_purpose_block_is_refused_at_its_edges(network):
    block = ipaddress.ip_network(network)
    for address in (block.network_address, block.network_address + 1, block.broadcast_address):
        host = "[{}]".format(address) if address.version == 6 else str(address)
        with pytest.raises(CallbackUrlForbidden):
            check_callback_url("http://{}/hook".format(host), resolve=no_dns)
        assert forbidden_reason(address), address


@pytest.mark.parametrize("address", [
    "fec0::1", "feff:ffff::1",                       # site-local, deprecated (RFC 3879)
    "100:0:0:1::1",                                  # dummy IPv6 prefix (RFC 9780)
    "64:ff9b:1::8.8.8.8",                            # local-use IPv4/IPv6 translation (RFC 8215)
    "2620:4f:8000::1",                               # AS112 direct delegation
    "4000::1", "1000::1", "e000::1",                 # never allocated: outside 2000::/3
    "192.31.196.1", "192.52.193.1", "192.175.48.1",  # AS112, AMT
    "2001:1::1", "2001:20::1", "2001:4:112::1",      # PCP anycast, ORCHIDv2, AS112 in 2001::/23
])
def test_blocks_missed_before_are_refused(address):
    assert forbidden_reason(ipaddress.ip_address(address)), address
    with pytest.raises(CallbackUrlForbidden):
        check_callback_url("https://hooks.example/x", resolve=resolver(address))


def test_the_refusal_for_a_private_name_echoes_no_address():
    for address in ("127.0.0.1", "10.1.2.3", "::1", "fec0::1", "169.254.169.254"):
        with pytest.raises(CallbackUrlForbidden) as refused:
            check_callback_url("http://vm/", resolve=resolver(address))
        assert address not in refused.value.message
        for word in ("loopback", "private", "link-local", "resolves"):
            assert word not in refused.value.message


@pytest.mark.parametrize("port", [22, 25, 6379, 5432, 8080, 11211, 15672])
def test_only_ports_80_and_443_are_allowed_by_default(port):
    with pytest.raises(CallbackUrlForbidden, match="^callback_url port {} is not allowed; allowed: 80, 443$".format(port)):
        check_callback_url("http://{}:{}/".format(PUBLIC_V4, port), resolve=no_dns)


def test_default_and_explicit_default_ports_pass():
    for url in ("http://{}/", "http://{}:80/", "https://{}/", "https://{}:443/"):
        assert check_callback_url(url.format(PUBLIC_V4), resolve=no_dns).addresses == (PUBLIC_V4,)
    with pytest.raises(CallbackUrlForbidden):
        check_callback_url("http://{}:443/".format(PUBLIC_V4), resolve=no_dns,
                           allowed_ports=PortRanges([(80, 80)]))


def test_allowed_ports_come_from_config():
    from imagepipe.settings import Settings

    assert Settings.from_config({}).webhook_allowed_ports == PortRanges([(80, 80), (443, 443)])
    ports = Settings.from_config({"WEBHOOK_ALLOWED_PORTS": "443, 8000-8999"}).webhook_allowed_ports
    assert 443 in ports and 8000 in ports and 8999 in ports and 80 not in ports and 9000 not in ports
    assert str(ports) == "443, 8000-8999"
    assert Settings.from_config({"WEBHOOK_ALLOWED_PORTS": "any"}).webhook_allowed_ports is None
    assert Settings.from_config({"WEBHOOK_MAX_PER_HOST": "5"}).webhook_max_per_host == 5
    for bad in ("http", "0", "70000", "90-80", "1-2-3"):
        with pytest.raises(ValueError):
            Settings.from_config({"WEBHOOK_ALLOWED_PORTS": bad})
    with pytest.raises(ValueError):
        Settings.from_config({"WEBHOOK_MAX_PER_HOST": "0"})


def test_a_name_that_stops_resolving_is_retried_not_given_up():
    def nxdomain(host, port):
        raise OSError(-3, "Temporary failure in name resolution")

    attempt = WebhookSender(timeout=2, resolve=nxdomain).send("https://hooks.example/x", STATUS)
    assert not attempt.ok and not attempt.permanent


def test_host_slots_count_per_host():
    slots = HostSlots(2)
    assert slots.acquire("a") and slots.acquire("a") and not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.acquire("a") and not slots.acquire("a")
    for host in ("a", "a", "b"):
        slots.release(host)
    assert slots.busy == {}
