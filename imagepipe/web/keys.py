"""API keys, and the tenant each one stands for.

``API_KEYS`` is a comma-separated list of ``key`` or ``name:key`` entries.
With keys, every non-public request needs ``Authorization: Bearer <key>``.
With ``KEY_TENANTS`` on (the default when keys are set) each key is a
tenant: an image belongs to the tenant that uploaded it, other tenants see
404 for it, and identical bytes are deduplicated within a tenant only.  A
tenant is the entry's ``name``, or for a bare key a digest of it -- never the
key itself, which would then sit in the catalog.  Renaming an entry or
rotating a bare key therefore starts a new tenant (say ``name:newkey`` to
keep one across rotations).
"""
import hashlib
import hmac
import re
from dataclasses import dataclass

from imagepipe.errors import Unauthorized

TENANT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ApiKey:
    secret: bytes
    tenant: str


def parse_api_keys(value):
    """``API_KEYS`` as ``ApiKey``s; a value that is set but names no key is an error."""
    text = str(value or "")
    keys = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        if not sep:
            name, secret = "", entry
        if not secret:
            raise ValueError("API_KEYS entry {!r} has no key after the ':'".format(name))
        if name and not TENANT_NAME_RE.fullmatch(name):
            raise ValueError("API_KEYS name {!r}: use 1-64 characters A-Z, a-z, 0-9, '_', '.', '-'"
                             .format(name))
        tenant = name or "key-" + hashlib.sha256(secret.encode()).hexdigest()[:16]
        keys.append(ApiKey(secret.encode(), tenant))
    if text.strip() and not keys:
        raise ValueError("API_KEYS is set to {!r} but names no key: leave it empty to run "
                         "without authentication".format(text))
    if len({key.tenant for key in keys}) != len(keys):
        raise ValueError("API_KEYS: two entries have the same name (or the same key)")
    return tuple(keys)


class ApiKeys:
    def __init__(self, keys, tenants=True):
        self.keys = tuple(keys)
        self.tenants = tenants

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.api_keys, settings.key_tenants)

    @property
    def required(self):
        return bool(self.keys)

    def tenant_of(self, request):
        """The request's tenant (None: no keys, or keys without tenants); ``Unauthorized`` if no valid key."""
        if not self.keys:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        presented = token.strip().encode()
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized("send Authorization: Bearer <API key>")
        # compare with every key, in constant time, so timing reveals nothing
        matches = [key for key in self.keys if hmac.compare_digest(presented, key.secret)]
        if not matches:
            raise Unauthorized("send Authorization: Bearer <API key>")
        return matches[0].tenant if self.tenants else None
