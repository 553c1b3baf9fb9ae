"""Grants: storage's signed permission for another service to write or read one blob.

The claim-check data path: image bytes travel through the blob store, not
through RabbitMQ.  Storage stays the only owner of the catalog and the only
issuer of access: it hands the gateway a grant to write one new original,
imaging a grant to read one original and one per rendition it will write,
and it registers a written blob only after checking its size and SHA-256
against what the writer declared.

A grant is ``<payload>.<signature>``: the payload is base64url JSON naming
the access (``write``/``read``), the blob key and an expiry; the signature is
HMAC-SHA256 with a secret every storage process shares (kept in the
catalog).  Writes always go to a fresh ``staging/<random>`` key -- never to
where stored data lives -- and only storage moves a checked blob into place.
Keys come from ``imagepipe.storage.blobs``' builders, so no grant can name a
path outside the store; ``check_key`` is the second line of defence on the
side that opens files.
"""
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from imagepipe.errors import InvalidGrant

WRITE, READ = "write", "read"
STAGING_PREFIX = "staging/"
# every key a grant may name: what original_key, variant_key and staging_key build
GRANTABLE_KEY_RE = re.compile(
    r"staging/[0-9a-f]{32}"
    r"|originals/[0-9a-f]{2}/[0-9a-f]{32}"
    r"|variants/[0-9a-f]{2}/[0-9a-f]{32}/[a-z0-9][a-z0-9_-]{0,31}(\.[a-z0-9]{1,8})?")
DEFAULT_TTL = 15 * 60.0


def staging_key():
    """A fresh key for one write: 128 random bits, so grants cannot collide or be guessed."""
    return STAGING_PREFIX + secrets.token_hex(16)


def check_key(key):
    """``key`` if a grant may name it, else ``InvalidGrant`` (no traversal, no other shape)."""
    if not isinstance(key, str) or not GRANTABLE_KEY_RE.fullmatch(key):
        raise InvalidGrant("the grant names no blob of this store")
    return key


@dataclass(frozen=True)
class Grant:
    """A verified grant."""

    access: str
    key: str
    expires: float


class GrantSigner:
    def __init__(self, secret, ttl=DEFAULT_TTL, clock=time.time):
        if len(secret) < 16:
            raise ValueError("the grant secret must have at least 16 bytes")
        self._secret = secret
        self.ttl = ttl
        self.clock = clock

    def issue(self, access, key, ttl=None):
        """``{"access", "key", "expires", "token"}``: what travels to the grantee."""
        expires = round(self.clock() + (self.ttl if ttl is None else ttl), 3)
        payload = _b64encode(json.dumps(
            {"a": access, "k": check_key(key), "e": expires}, separators=(",", ":")).encode())
        token = payload + "." + self._sign(payload)
        return {"access": access, "key": key, "expires": expires, "token": token}

    def verify(self, token, access):
        """The ``Grant`` a token stands for, if it is ours, unexpired, and for ``access``."""
        if not isinstance(token, str) or token.count(".") != 1:
            raise InvalidGrant("malformed grant")
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise InvalidGrant("the grant's signature does not match: it was not issued by this store")
        try:
            fields = json.loads(_b64decode(payload))
            grant = Grant(str(fields["a"]), check_key(fields["k"]), float(fields["e"]))
        except (ValueError, KeyError, TypeError):
            raise InvalidGrant("malformed grant") from None
        if grant.access != access:
            raise InvalidGrant("the grant is for {}, not {}".format(grant.access, access))
        if grant.expires < self.clock():
            raise InvalidGrant("the grant expired")
        return grant

    def _sign(self, payload):
        return _b64encode(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())


def _b64encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
