"""Completion webhooks: vetting callback URLs, signing and sending the POST.

An upload may name a ``callback_url``; once its image is ``done`` or
``failed`` the gateway POSTs the image's status JSON there.  This module is
the plain part of that: nothing here knows about nameko or AMQP.

SSRF: a callback URL makes this service send requests on a client's behalf,
so unless ``WEBHOOK_ALLOW_PRIVATE`` is set a URL is refused when its scheme
is not http/https or when any address its host resolves to is not a public
unicast address (loopback, private, link-local, multicast, reserved,
unspecified, shared, documentation; IPv4 addresses embedded in IPv6 --
mapped, 6to4, NAT64 -- are judged as the IPv4 address).  The check runs at
upload and again before every delivery (the DNS answer may have changed),
and the POST connects to the address that was vetted, not to whatever a
second lookup returns.  Redirects are never followed: they would lead past
the check.

Signature (when ``WEBHOOK_SECRET`` is set)::

    X-Imagepipe-Timestamp: <unix seconds>
    X-Imagepipe-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

The timestamp is part of the signed material, so a receiver that rejects old
timestamps cannot be fed a replayed delivery.
"""
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from imagepipe.errors import CallbackUrlForbidden, InvalidCallbackUrl

log = logging.getLogger(__name__)

CALLBACK_FIELD = "callback_url"
MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
TERMINAL_STATUSES = ("done", "failed")

SIGNATURE_HEADER = "X-Imagepipe-Signature"
TIMESTAMP_HEADER = "X-Imagepipe-Timestamp"
DELIVERY_HEADER = "X-Imagepipe-Delivery"
EVENT_HEADER = "X-Imagepipe-Event"
USER_AGENT = "imagepipe-webhooks/1"

# inet_aton accepts "127.1", "0x7f.0.0.1" and "2130706433" as IPv4 addresses;
# such spellings are refused rather than second-guessed.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Special-purpose blocks (RFC 6890 and successors) spelled out, so the rule
# does not depend on which Python patch release's ipaddress tables are in use.
_SPECIAL_PURPOSE = tuple(ipaddress.ip_network(network) for network in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
    "::/8", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "ff00::/8",
))


@dataclass(frozen=True)
class Target:
    """A vetted callback URL and the addresses it may be delivered to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple


def callback_url_from(query_args, form_fields):
    """The ``callback_url`` of an upload (query parameter or form field), or None."""
    from_query = query_args.get(CALLBACK_FIELD)
    from_form = form_fields.get(CALLBACK_FIELD)
    if from_query and from_form and from_query != from_form:
        raise InvalidCallbackUrl("callback_url is given twice with different values")
    url = from_form or from_query
    if url is None:
        return None
    if not url.strip():
        raise InvalidCallbackUrl("callback_url is empty")
    return url


def resolve_host(host, port):
    """Every address ``host`` resolves to (what a connection could reach)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def check_callback_url(url, allow_private=False, resolve=resolve_host):
    """Vet a callback URL; return its ``Target`` or raise a 400 error.

    ``resolve(host, port)`` returns the host's addresses; it is injected so
    tests can exercise name resolution without a DNS server.
    """
    scheme, host, port = _parse(url)
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        if all(_NUMERIC_LABEL.match(label) for label in host.split(".")):
            raise InvalidCallbackUrl("callback_url host {!r} is not a valid name or IP address".format(host))
        try:
            addresses = [ipaddress.ip_address(address.split("%", 1)[0]) for address in resolve(host, port)]
        except (OSError, UnicodeError, ValueError) as exc:
            raise InvalidCallbackUrl("callback_url host {!r} does not resolve ({})".format(
                host, type(exc).__name__)) from None
        if not addresses:
            raise InvalidCallbackUrl("callback_url host {!r} does not resolve".format(host))
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason:
                raise CallbackUrlForbidden(
                    "callback_url host {!r} resolves to {} ({}); only public addresses are "
                    "allowed".format(host, address, reason))
    return Target(url=url, scheme=scheme, host=host, port=port,
                  addresses=tuple(str(address) for address in addresses))


def forbidden_reason(address):
    """Why a callback may not go to ``address``, or None if it is public unicast."""
    address = embedded_ipv4(address)
    for reason in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, "is_" + reason):
            return reason.replace("_", "-")
    for network in _SPECIAL_PURPOSE:
        if address.version == network.version and address in network:
            return "special-purpose {}".format(network)
    if not address.is_global:
        return "not globally routable"
    return None


def embedded_ipv4(address):
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), else itself."""
    if address.version != 6:
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _parse(url):
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise InvalidCallbackUrl("callback_url must be a URL of at most {} characters".format(MAX_URL_LENGTH))
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise InvalidCallbackUrl("callback_url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidCallbackUrl("callback_url is malformed: {}".format(exc)) from None
    scheme = parts.scheme.lower()
    if scheme and scheme not in ALLOWED_SCHEMES:
        raise CallbackUrlForbidden("callback_url scheme {!r} is not allowed; use http or https".format(scheme))
    if not scheme or not parts.netloc:
        raise InvalidCallbackUrl("callback_url must be an absolute http(s) URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidCallbackUrl("callback_url has no host")
    if port == 0:
        raise InvalidCallbackUrl("callback_url port 0 is not valid")
    return scheme, host, port or DEFAULT_PORTS[scheme]


def _ip_literal(host):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# -- signing ------------------------------------------------------------------

def signature(secret, timestamp, body):
    """``sha256=<hex>`` over ``b"<timestamp>." + body``."""
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(secret, timestamp, body, header, now=None, tolerance=300):
    """What a receiver does: constant-time compare, and refuse stale timestamps."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance and hmac.compare_digest(signature(secret, timestamp, body), header or "")


def delivery_id(record, url):
    """Stable across retries and redeliveries of one completion to one URL."""
    material = "{}|{}|{}|{}".format(record["id"], record["status"], record["updated_at"], url)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


# -- sending ------------------------------------------------------------------

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
                 clock=time.time):
        self.timeout = timeout
        self.secret = secret
        self.allow_private = allow_private
        self.resolve = resolve
        self.clock = clock

    def send(self, url, status_body):
        """POST ``status_body`` to ``url``; return an ``Attempt`` (never raises)."""
        try:
            target = check_callback_url(url, self.allow_private, self.resolve)
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

    ``outcome`` is ``delivered``, ``skipped``, ``retry`` or ``gave_up``; for a
    retry, ``retry_message`` is to be handled again after ``retry_delay``.
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


def deliver(message, record, status_body, send, retry_delays):
    """Handle one delivery message for the image ``record`` (storage's record).

    The URL is always the image's current ``callback_url``: a re-upload that
    names a new one takes over pending retries for the old one.
    """
    attempts, pinned_url = retry_state(message)
    url = record.get("callback_url")
    if not url:
        return Decision("skipped", "no callback_url")
    if record["status"] not in TERMINAL_STATUSES:
        return Decision("skipped", "image is {}".format(record["status"]))
    if pinned_url and pinned_url != url:
        return Decision("skipped", "callback_url was replaced by a later upload")
    result = send(url, status_body)
    if result.ok:
        return Decision("delivered", result.detail)
    return next_attempt(record["id"], attempts, url, result.detail, retry_delays, result.permanent)


def next_attempt(image_id, attempts, url, detail, retry_delays, permanent=False):
    """Schedule the next try after a failed one, or give up."""
    if permanent or attempts >= len(retry_delays):
        return Decision("gave_up", detail)
    return Decision("retry", detail, retry_message(image_id, attempts + 1, url),
                    retry_delays[attempts])
