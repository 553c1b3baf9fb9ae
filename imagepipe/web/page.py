"""The web page's static files (``imagepipe/web/static/``): loaded once, served as is.

No build step: the files are plain HTML, CSS and JavaScript.  Only the files
listed in ``ASSETS`` exist for the outside world, so nothing from a URL ever
becomes a file path.
"""
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from imagepipe.errors import NotFound

WEB_ROOT = Path(__file__).resolve().parent / "static"
PAGE = "index.html"
ASSETS = {
    PAGE: "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    data: bytes
    content_type: str
    etag: str


class WebAssets:
    def __init__(self, root=WEB_ROOT):
        self._assets = {}
        for name, content_type in ASSETS.items():
            data = (Path(root) / name).read_bytes()
            self._assets[name] = Asset(data, content_type, hashlib.sha256(data).hexdigest()[:32])

    def get(self, name):
        asset = self._assets.get(name)
        if asset is None:
            raise NotFound("no file {!r}".format(str(name)[:80]))
        return asset


@lru_cache(maxsize=None)
def web_assets():
    """The page's files, read once, on first use: they never change at run time."""
    return WebAssets()


def security_headers(public_url=""):
    """Headers for every page response: only this origin may supply anything.

    ``blob:`` images are the page's own: with API keys configured and no
    signed URLs (``URL_SIGNING_SECRET``) it fetches renditions with an
    ``Authorization`` header (an ``<img src>`` cannot send one) and shows
    them through object URLs.  A ``PUBLIC_URL`` on another
    origin is where the API's links point, so it is allowed too.
    """
    extra = ""
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme and parts.netloc:
            extra = " {}://{}".format(parts.scheme, parts.netloc)
    policy = "; ".join([
        "default-src 'self'",
        "img-src 'self' blob:{}".format(extra),
        "connect-src 'self'{}".format(extra),
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # revalidate each time (cheap with the ETag): a new deploy shows at once
        "Cache-Control": "no-cache",
    }
