"""How long caches may keep the bytes of an image, and where a stale version leads.

* The original (its id is its content hash) and a rendition at its
  versioned URL (``?v=`` naming the current version) never change: immutable
  for a year.  A versioned URL naming another version is answered with a
  redirect to the current one (``no-cache``), never with other bytes.
* A rendition at its plain URL changes when it is rendered again:
  ``no-cache`` with an ETag, so caches keep it but ask each time (a 304
  costs no bytes).
* ``public`` for an open server and for signed URLs (the URL is the
  credential, and is cached no longer than it is valid); ``private`` for
  answers to a bearer key, which a shared cache must not hand to anyone else.
"""
from urllib.parse import urlencode

from imagepipe.web.api import VERSION

YEAR = 31536000
REVALIDATE = "no-cache"


def cache_control(immutable, shared, valid_until=None, now=None):
    scope = "public" if shared else "private"
    if not immutable:
        return "{}, {}".format(scope, REVALIDATE)
    max_age = YEAR if valid_until is None else max(0, min(YEAR, int(valid_until - now)))
    return "{}, max-age={}, immutable".format(scope, max_age)


def current_version_location(path, query_pairs, version, base_url=""):
    """The URL a stale version redirects to: the same query (a signature, say), the current ``v``."""
    pairs = [(VERSION, version)] + [(name, value) for name, value in query_pairs if name != VERSION]
    return "{}{}?{}".format(base_url, path, urlencode(pairs))
