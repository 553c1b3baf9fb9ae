"""Sending a webhook: one pinned POST, and what to do after it.

An upload may name a ``callback_url``; once its image is ``done`` or
``failed`` the webhooks service POSTs the image's status JSON there.  This
module is the plain part of that: nothing here knows about nameko or AMQP.
Redirects are never followed: they would lead past the URL rule
(``imagepipe.webhooks.urls``).

Each (image, callback URL, outcome) is delivered once: ``deliver`` claims
the attempt in a ledger first (``imagepipe.storage.deliveries``, reached
through storage), so a re-upload, a redelivered message or a duplicate
publish finds the delivery made, or under way, and sends nothing.  And at
most ``WEBHOOK_MAX_PER_HOST`` deliveries to one host name run at once in a
webhooks process (``HostSlots``); the rest wait in RabbitMQ, not in memory.
"""
import ipaddress
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from imagepipe.errors import CallbackUrlForbidden, InvalidCallbackUrl, UnresolvableCallbackHost
from imagepipe.records import FINISHED
from imagepipe.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, delivery_id, signature
from imagepipe.webhooks.urls import ALLOWED_PORTS, DEFAULT_PORTS, check_callback_url, resolve_host

DELIVERY_HEADER = "X-Imagepipe-Delivery"
EVENT_HEADER = "X-Imagepipe-Event"
USER_AGENT = "imagepipe-webhooks/1"
# How long a delivery that cannot start now (its host is at its cap, or its
# attempt is being made elsewhere) waits in RabbitMQ before it is looked at again.
WAIT_SECONDS = 1.0
# The ledger's states for an attempt's end (imagepipe.storage.deliveries)
RETRYING, DELIVERED, GAVE_UP = "pending", "delivered", "gave_up"


@dataclass(frozen=True)
class Attempt:
    ok: bool
    detail: str
    permanent: bool = False


class PinnedAddressAdapter(HTTPAdapter):
    """Sends to a vetted IP while TLS still checks the certificate for the host name."""

    def __init__(self, host, **kwargs):
        self.host = host
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self.host  # SNI
        kwargs["assert_hostname"] = self.host
        super().init_poolmanager(*args, **kwargs)


def pinned_request(target, address):
    """``(url, Host header)`` that reach ``address`` but name ``target.host``."""
    parts = urlsplit(target.url)
    ip = ipaddress.ip_address(address)
    ip_host = "[{}]".format(ip) if ip.version == 6 else str(ip)
    default_port = DEFAULT_PORTS[target.scheme]
    netloc = ip_host if target.port == default_port else "{}:{}".format(ip_host, target.port)
    host_header = _host_header(target.host, target.port, default_port)
    return urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, "")), host_header


def _host_header(host, port, default_port):
    if ":" in host:
        host = "[{}]".format(host)
    return host if port == default_port else "{}:{}".format(host, port)


class WebhookSender:
    """One POST of an image's status to its callback URL."""

    def __init__(self, timeout=5.0, secret="", allow_private=False, resolve=resolve_host,
                 clock=time.time, allowed_ports=ALLOWED_PORTS):
        self.timeout = timeout
        self.secret = secret
        self.allow_private = allow_private
        self.resolve = resolve
        self.clock = clock
        self.allowed_ports = allowed_ports

    def send(self, url, status_body):
        """POST ``status_body`` to ``url``; return an ``Attempt`` (never raises)."""
        try:
            target = check_callback_url(url, self.allow_private, self.resolve, self.allowed_ports)
        except UnresolvableCallbackHost as exc:
            return Attempt(False, exc.message)  # DNS may be down for now: try again later
        except CallbackUrlForbidden as exc:
            return Attempt(False, exc.message, permanent=True)
        except InvalidCallbackUrl as exc:
            return Attempt(False, exc.message)  # e.g. DNS down for now: try again later
        body = json.dumps(status_body, separators=(",", ":"), sort_keys=True).encode()
        pinned_url, host_header = pinned_request(target, target.addresses[0])
        headers = self.headers(body, status_body, url)
        headers["Host"] = host_header
        with requests.Session() as session:
            session.trust_env = False  # no proxies from the environment: they would bypass the pin
            if target.scheme == "https":
                session.mount("https://", PinnedAddressAdapter(target.host))
            try:
                response = session.post(pinned_url, data=body, headers=headers,
                                        timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                return Attempt(False, "{}: {}".format(type(exc).__name__, exc)[:300])
            response.close()
        if 200 <= response.status_code < 300:
            return Attempt(True, "HTTP {}".format(response.status_code))
        if 300 <= response.status_code < 400:
            return Attempt(False, "HTTP {} (redirects are not followed)".format(response.status_code))
        return Attempt(False, "HTTP {}".format(response.status_code))

    def headers(self, body, status_body, url):
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: "image.{}".format(status_body["status"]),
            DELIVERY_HEADER: delivery_id(status_body, url),
        }
        if self.secret:
            timestamp = str(int(self.clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = signature(self.secret, timestamp, body)
        return headers


# -- one delivery attempt, and what to do next ----------------------------------

@dataclass(frozen=True)
class Decision:
    """What became of one delivery message.

    ``outcome`` is ``delivered``, ``skipped``, ``retry``, ``deferred`` or
    ``gave_up``; for a retry or a deferral, ``retry_message`` is to be
    handled again after ``retry_delay``.
    """

    outcome: str
    detail: str
    retry_message: dict = None
    retry_delay: float = None


def retry_state(message):
    """``(attempts made so far, URL the delivery is pinned to or None)``."""
    webhook = message.get("webhook") or {}
    return int(webhook.get("attempt") or 0), webhook.get("callback_url")


def retry_message(image_id, attempt, callback_url):
    return {"id": image_id, "webhook": {"attempt": attempt, "callback_url": callback_url}}


class HostSlots:
    """At most ``limit`` deliveries at once to each host name, in this process.

    No lock: the webhooks service runs on eventlet, and nothing here yields
    between the check and the count.
    """

    def __init__(self, limit):
        self.limit = limit
        self.busy = {}

    def acquire(self, host):
        if self.busy.get(host, 0) >= self.limit:
            return False
        self.busy[host] = self.busy.get(host, 0) + 1
        return True

    def release(self, host):
        left = self.busy.get(host, 0) - 1
        if left > 0:
            self.busy[host] = left
        else:
            self.busy.pop(host, None)


class NoLedger:
    """Every claim wins (tests of the decision alone; the service always has a ledger)."""

    def claim(self, image_id, url, outcome, attempt):
        return "claimed"

    def finish(self, image_id, url, outcome, attempt, state):
        pass


def deliver(message, record, status_body, send, retry_delays, ledger=NoLedger(), slots=None):
    """Handle one delivery message for the image ``record`` (storage's record).

    The URL is always the image's current ``callback_url``: a re-upload that
    names a new one takes over pending retries for the old one.  ``ledger``
    claims the attempt (once per image, URL and outcome); ``slots`` caps
    concurrent deliveries per host.
    """
    attempts, pinned_url = retry_state(message)
    url = record.get("callback_url")
    if not url:
        return Decision("skipped", "no callback_url")
    if record["status"] not in FINISHED:
        return Decision("skipped", "image is {}".format(record["status"]))
    if pinned_url and pinned_url != url:
        return Decision("skipped", "callback_url was replaced by a later upload")
    host = (urlsplit(url).hostname or "").lower()
    if slots is not None and not slots.acquire(host):
        return Decision("deferred", "{} deliveries to {} under way".format(slots.limit, host),
                        message, WAIT_SECONDS)
    try:
        claim = ledger.claim(record["id"], url, record["status"], attempts)
        if claim == "busy":
            return Decision("deferred", "this attempt is being made elsewhere", message, WAIT_SECONDS)
        if claim != "claimed":
            return Decision("skipped", "already {}".format(
                "delivered or given up" if claim == "finished" else "handled by another message"))
        result = send(url, status_body)
    finally:
        if slots is not None:
            slots.release(host)
    if result.ok:
        decision = Decision("delivered", result.detail)
    else:
        decision = next_attempt(record["id"], attempts, url, result.detail, retry_delays,
                                result.permanent)
    state = {"delivered": DELIVERED, "retry": RETRYING}.get(decision.outcome, GAVE_UP)
    ledger.finish(record["id"], url, record["status"], attempts + 1, state)
    return decision


def next_attempt(image_id, attempts, url, detail, retry_delays, permanent=False):
    """Schedule the next try after a failed one, or give up."""
    if permanent or attempts >= len(retry_delays):
        return Decision("gave_up", detail)
    return Decision("retry", detail, retry_message(image_id, attempts + 1, url),
                    retry_delays[attempts])
