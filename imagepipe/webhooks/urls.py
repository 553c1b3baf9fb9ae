"""The rule for callback URLs: which URLs a webhook may be sent to (SSRF).

A callback URL makes this service send requests on a client's behalf, so
unless ``WEBHOOK_ALLOW_PRIVATE`` is set a URL is refused when its scheme is
not http/https or when any address its host resolves to is not a public
unicast address (loopback, private, link-local, multicast, reserved,
unspecified, shared, documentation; IPv4 addresses embedded in IPv6 --
mapped, 6to4, NAT64 -- are judged as the IPv4 address).  The check runs at
upload and again before every delivery (the DNS answer may have changed),
and the POST connects to the address that was vetted, not to whatever a
second lookup returns.

The address rule follows the IANA special-purpose registries (IPv4 and IPv6,
checked 2024-10): every block in them is refused, including the few marked
globally reachable (anycast, AS112, AMT: no webhook receiver lives there),
and an IPv6 address must be in 2000::/3, the only block IANA allocates
global unicast from -- which also refuses the deprecated site-local
``fec0::/10`` and whatever else is still unassigned.

Only ports in ``WEBHOOK_ALLOWED_PORTS`` (80 and 443 by default) are allowed:
a callback must not be a way to knock on a host's SSH or Redis port.

Refusals say *that* a host is not allowed, never what it resolved to: the
answer must not turn the upload form into a probe of internal DNS names.
Whether a name exists is not told either: a name that does not resolve gets
the same code and message as one that resolves to a private address
(``UnresolvableCallbackHost`` only lets delivery retry a DNS failure later).
"""
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from imagepipe.configvalues import PortRanges
from imagepipe.errors import CallbackUrlForbidden, InvalidCallbackUrl, UnresolvableCallbackHost

CALLBACK_FIELD = "callback_url"
MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
ALLOWED_PORTS = PortRanges(((80, 80), (443, 443)))

# inet_aton accepts "127.1", "0x7f.0.0.1" and "2130706433" as IPv4 addresses;
# such spellings are refused rather than second-guessed.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
# Special-purpose blocks (IANA's registries, RFC 6890 and successors) spelled
# out, so the rule does not depend on which Python patch release's ipaddress
# tables are in use.  224.0.0.0/3 is multicast, 240/4 and the broadcast address.
SPECIAL_PURPOSE = tuple(ipaddress.ip_network(network) for network in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
    "::/8", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23", "2001:db8::/32",
    "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10",
    "ff00::/8",
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


def check_callback_url(url, allow_private=False, resolve=resolve_host, allowed_ports=ALLOWED_PORTS):
    """Vet a callback URL; return its ``Target`` or raise a 400 error.

    ``resolve(host, port)`` returns the host's addresses; it is injected so
    tests can exercise name resolution without a DNS server.
    ``allowed_ports``: ``PortRanges`` (WEBHOOK_ALLOWED_PORTS), or None for any port.
    """
    scheme, host, port = _parse(url)
    if allowed_ports is not None and port not in allowed_ports:
        raise CallbackUrlForbidden("callback_url port {} is not allowed; allowed: {}".format(
            port, allowed_ports))
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        if all(_NUMERIC_LABEL.match(label) for label in host.split(".")):
            raise InvalidCallbackUrl("callback_url host {!r} is not a valid name or IP address".format(host))
        try:
            addresses = [ipaddress.ip_address(address.split("%", 1)[0]) for address in resolve(host, port)]
        except (OSError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise UnresolvableCallbackHost(_not_public(host))
    if not allow_private and any(forbidden_reason(address) for address in addresses):
        raise CallbackUrlForbidden(_not_public(host))
    return Target(url=url, scheme=scheme, host=host, port=port,
                  addresses=tuple(str(address) for address in addresses))


def _not_public(host):
    return "callback_url host {!r} is not a public internet address; only public addresses are allowed".format(host)


def forbidden_reason(address):
    """Why a callback may not go to ``address``, or None if it is public unicast (for logs and tests)."""
    address = embedded_ipv4(address)
    for reason in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, "is_" + reason):
            return reason.replace("_", "-")
    if address.version == 6 and address not in _GLOBAL_UNICAST_V6:
        return "outside IPv6 global unicast 2000::/3"
    for network in SPECIAL_PURPOSE:
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

