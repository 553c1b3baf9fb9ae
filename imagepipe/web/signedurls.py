"""Signed, expiring URLs for the bytes of an image (``URL_SIGNING_SECRET``).

With ``API_KEYS`` set every request needs ``Authorization: Bearer``, which an
``<img src>`` cannot send.  The API therefore hands out rendition URLs that
carry their own proof, as imgproxy and Cloudinary do::

    /images/<id>/<preset>?v=<version>&expires=<unix seconds>&signature=<base64url>
    signature = HMAC-SHA256(URL_SIGNING_SECRET, "<path>\\n<expires>")

The signature covers the path (so it is good for one rendition of one image)
and the expiry; ``v`` only picks the version to cache, so it is left out.
Expiries are rounded up to a multiple of a quarter of the lifetime, so the
URLs handed out for one rendition stay the same for a while and browser and
CDN caches keep working across page loads; each is valid for at least
``URL_SIGNING_TTL`` seconds.
"""
import base64
import hashlib
import hmac
import math
import time
from urllib.parse import urlencode

from imagepipe.errors import ExpiredSignature, InvalidSignature

EXPIRES = "expires"
SIGNATURE = "signature"


class UrlSigner:
    def __init__(self, secret, ttl=3600.0, clock=time.time):
        if not secret:
            raise ValueError("a URL signing secret must not be empty")
        self._key = secret.encode() if isinstance(secret, str) else bytes(secret)
        self.ttl = ttl
        self.clock = clock
        self._step = max(1, int(ttl // 4))

    def expiry(self):
        """Now + ttl, rounded up to the next multiple of ttl / 4 (whole seconds)."""
        return int(math.ceil((self.clock() + self.ttl) / self._step) * self._step)

    def sign(self, path, query=(), expires=None):
        """``path?<query>&expires=..&signature=..``: ``query`` pairs come first, unsigned."""
        expires = self.expiry() if expires is None else int(expires)
        pairs = list(query) + [(EXPIRES, str(expires)), (SIGNATURE, self.signature(path, expires))]
        return "{}?{}".format(path, urlencode(pairs))

    def signature(self, path, expires):
        digest = hmac.new(self._key, "{}\n{}".format(path, int(expires)).encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")

    def verify(self, path, args):
        """The expiry (unix seconds) of a valid signed request; raises ``Forbidden`` errors.

        ``args``: the query parameters (any mapping with ``get``).  The
        signature is compared in constant time before the expiry is looked
        at, so a forged URL never learns whether its expiry would have passed.
        """
        expires, presented = args.get(EXPIRES), args.get(SIGNATURE)
        try:
            expires = int(expires)
        except (TypeError, ValueError):
            raise InvalidSignature("a signed URL needs a whole-number expires") from None
        if not hmac.compare_digest(self.signature(path, expires).encode(),
                                   str(presented or "").encode()):
            raise InvalidSignature("the signature does not match this URL's path and expiry")
        if expires < self.clock():
            raise ExpiredSignature("this signed URL expired; ask the API for a fresh one")
        return expires


def signer_for(settings):
    """The ``UrlSigner`` of ``Settings``, or None: signed URLs exist only to get past
    ``API_KEYS``, so without keys (everything is open) or without a secret there are none."""
    if not settings.api_keys or not settings.url_signing_secret:
        return None
    return UrlSigner(settings.url_signing_secret, settings.url_signing_ttl)


def is_signed(args):
    """Whether a request's query parameters try to be a signed URL."""
    return SIGNATURE in args or EXPIRES in args
