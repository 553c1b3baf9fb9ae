"""Signed, expiring rendition URLs under API keys, over real HTTP against the real services.

An ``<img src>`` cannot send ``Authorization``: the API hands out URLs that
carry an HMAC of their path and expiry instead.  These work without the
header; nothing else does -- not a tampered path or expiry, not an expired
URL, not another image's signature, not another route.
"""
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from imagepipe.web.signedurls import UrlSigner
from tests.helpers import WebSession, make_jpeg, make_png, wait_for_status

KEY = "signed-urls-key"
SECRET = "signed-urls-secret"
OTHER_KEY = "another-tenants-key"


@pytest.fixture
def pipeline_config(pipeline_config):
    # two keys, two tenants: an image is its uploader's
    pipeline_config.update(API_KEYS=KEY + ",other:" + OTHER_KEY, URL_SIGNING_SECRET=SECRET,
                           URL_SIGNING_TTL=600)
    return pipeline_config


@pytest.fixture
def keyed(web):
    web.headers["Authorization"] = "Bearer " + KEY
    return web


@pytest.fixture
def anonymous(base_url):
    """A client without the key: what an <img src> is."""
    with WebSession(base_url) as session:
        yield session


@pytest.fixture
def image(pipeline, keyed):
    response = keyed.post("/upload", files={"image": ("a.jpg", make_jpeg(640, 480))})
    assert response.status_code == 202, response.text
    return wait_for_status(keyed, response.json()["id"])


def split(url):
    parts = urlsplit(url)
    return parts.path, dict(parse_qsl(parts.query))


def with_query(path, args):
    return "{}?{}".format(path, urlencode(args))


def assert_refused(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == code


def test_signed_urls_work_without_the_key(image, keyed, anonymous):
    for name, rendition in [("original", image["original"])] + sorted(image["variants"].items()):
        signed = rendition["signed_url"]
        response = anonymous.get(signed)
        assert response.status_code == 200, (name, response.text)
        assert response.content == keyed.get(rendition["url"]).content
        cache = response.headers["Cache-Control"]
        assert cache.startswith("public, max-age=") and cache.endswith(", immutable")
        expires = int(split(signed)[1]["expires"])
        # cached no longer than the URL is valid (600 s, rounded up to 150 s)
        assert 0 < int(cache.split("max-age=")[1].split(",")[0]) <= expires - time.time() + 1
        assert expires - time.time() <= 600 + 150 + 1
        # the plain and versioned URLs still need the key
        assert_refused(anonymous.get(rendition["url"]), 401, "unauthorized")
    for rendition in image["variants"].values():
        assert_refused(anonymous.get(rendition["versioned_url"]), 401, "unauthorized")
    # a key-holder's answers are private: a shared cache must not pass them on
    thumb = keyed.get(image["variants"]["thumb"]["versioned_url"])
    assert thumb.headers["Cache-Control"] == "private, max-age=31536000, immutable"


def test_listing_and_live_status_carry_signed_urls_too(image, keyed, anonymous):
    [listed] = keyed.get("/images").json()["images"]
    assert anonymous.get(listed["variants"]["thumb"]["signed_url"]).status_code == 200
    with keyed.get("/images/{}/events".format(image["id"]), stream=True) as stream:
        event = next(line for line in stream.iter_lines(decode_unicode=True) if line.startswith("data:"))
    assert '"signed_url":"/images/{}/thumb?v='.format(image["id"]) in event


def test_nothing_but_a_valid_signature_gets_in(image, keyed, anonymous):
    thumb_path, thumb = split(image["variants"]["thumb"]["signed_url"])
    medium_path = split(image["variants"]["medium"]["signed_url"])[0]
    other = keyed.post("/upload", data=make_png(80, 60), headers={"Content-Type": "image/png"}).json()
    wait_for_status(keyed, other["id"])
    other_path = "/images/{}/thumb".format(other["id"])
    expires = int(thumb["expires"])

    refused = [
        (with_query(medium_path, thumb), "invalid_signature"),            # another rendition
        (with_query(other_path, thumb), "invalid_signature"),             # another image
        (with_query(thumb_path, dict(thumb, expires=expires + 86400)), "invalid_signature"),
        (with_query(thumb_path, dict(thumb, signature=thumb["signature"][::-1])), "invalid_signature"),
        (with_query(thumb_path, dict(thumb, expires="tomorrow")), "invalid_signature"),
        (with_query(thumb_path, {"v": thumb["v"], "expires": expires}), "invalid_signature"),
    ]
    # a URL signed with the right secret, but expired a minute ago
    past = UrlSigner(SECRET, 600).sign(thumb_path, [("v", thumb["v"])], expires=int(time.time()) - 60)
    refused.append((past, "expired_signature"))
    # a URL signed with another secret
    forged = UrlSigner("guessed", 600).sign(thumb_path, [("v", thumb["v"])])
    refused.append((forged, "invalid_signature"))
    for url, code in refused:
        assert_refused(anonymous.get(url), 403, code)

    # signatures open the bytes of one image, nothing else
    signed_status = with_query("/images/" + image["id"], {"expires": expires, "signature": thumb["signature"]})
    assert_refused(anonymous.get(signed_status), 401, "unauthorized")
    assert_refused(anonymous.delete(signed_status), 401, "unauthorized")
    assert_refused(anonymous.get(with_query("/images", thumb)), 401, "unauthorized")
    assert anonymous.get(with_query(thumb_path, thumb)).status_code == 200  # and it still works


def test_a_stale_signed_version_redirects_with_its_signature(image, anonymous):
    thumb_path, thumb = split(image["variants"]["thumb"]["signed_url"])
    stale = anonymous.get(with_query(thumb_path, dict(thumb, v="0" * 16)), allow_redirects=False)
    assert stale.status_code == 302
    assert stale.headers["Location"] == image["variants"]["thumb"]["signed_url"]
    assert anonymous.get(stale.headers["Location"]).status_code == 200


def test_only_the_owner_deletes_and_a_deleted_images_signed_urls_are_404(image, keyed, base_url,
                                                                         anonymous):
    with WebSession(base_url) as other:
        other.headers["Authorization"] = "Bearer " + OTHER_KEY
        assert_refused(other.delete("/images/" + image["id"]), 404, "not_found")
        assert_refused(other.get("/images/" + image["id"]), 404, "not_found")
    assert keyed.get("/images/" + image["id"]).status_code == 200  # still there
    signed = image["variants"]["thumb"]["signed_url"]
    assert anonymous.get(signed).status_code == 200
    assert keyed.delete("/images/" + image["id"]).status_code == 204
    # the signature is still valid, but there is nothing left to open
    assert_refused(anonymous.get(signed), 404, "not_found")


def test_without_a_secret_there_are_no_signed_urls(runner_factory, pipeline_config, keyed, anonymous):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService

    pipeline_config["URL_SIGNING_SECRET"] = ""
    runner_factory(pipeline_config, GatewayService, ImagingService, StorageService).start()
    image_id = keyed.post("/upload", files={"image": ("a.jpg", make_jpeg(64, 64))}).json()["id"]
    status = wait_for_status(keyed, image_id)
    assert "signed_url" not in status["original"] and "signed_url" not in status["variants"]["thumb"]
    # and a URL signed with any secret is refused like any request without the key
    forged = UrlSigner(SECRET, 600).sign(split(status["variants"]["thumb"]["url"])[0])
    assert_refused(anonymous.get(forged), 401, "unauthorized")
