"""The URLs of image bytes: versioned, signed, and how long caches keep what they name."""
from urllib.parse import parse_qsl, urlsplit

import pytest

from imagepipe.errors import ExpiredSignature, InvalidSignature
from imagepipe.settings import Settings
from imagepipe.web import api
from imagepipe.web.caching import cache_control, current_version_location
from imagepipe.web.signedurls import UrlSigner, is_signed, signer_for
from tests.unit.test_gateway_http import IMAGE_ID, RECORD

# RECORD's thumb, one webp format with SHA-256 "ddd…": the format's version is
# its first 16 digits, the preset's a hash over "format:sha256" of each format
FORMAT_VERSION = "d" * 16
VERSION = api.rendition_version({"formats": {"webp": {"sha256": "d" * 64}}})


def query(url):
    return dict(parse_qsl(urlsplit(url).query))


def signer(now=1_000_000.0, ttl=3600):
    return UrlSigner("s3cret", ttl, clock=lambda: now)


def test_every_rendition_has_a_plain_and_a_versioned_url():
    thumb = api.image_status(RECORD, "https://img.example")["variants"]["thumb"]
    assert thumb["url"] == "https://img.example/images/{}/thumb".format(IMAGE_ID)
    assert thumb["version"] == VERSION and len(VERSION) == 16 and VERSION != FORMAT_VERSION
    assert thumb["versioned_url"] == thumb["url"] + "?v=" + VERSION
    webp = thumb["formats"]["webp"]
    assert webp["url"] == thumb["url"] + ".webp"
    assert (webp["version"], webp["versioned_url"]) == (
        FORMAT_VERSION, webp["url"] + "?v=" + FORMAT_VERSION)
    assert "signed_url" not in thumb and "signed_url" not in webp


def test_a_presets_version_follows_every_one_of_its_formats():
    formats = {"webp": {"sha256": "a" * 64}, "avif": {"sha256": "b" * 64}}
    before = api.rendition_version({"formats": formats})
    assert api.rendition_version({"formats": dict(formats, avif={"sha256": "c" * 64})}) != before
    assert api.rendition_version({"formats": dict(reversed(list(formats.items())))}) == before


def test_signed_urls_are_added_with_a_signer_and_verify():
    status = api.image_status(RECORD, "", signer())
    thumb, original = status["variants"]["thumb"], status["original"]
    assert thumb["signed_url"].startswith("/images/{}/thumb?v={}&expires=".format(IMAGE_ID, VERSION))
    assert signer().verify(urlsplit(thumb["signed_url"]).path, query(thumb["signed_url"]))
    webp = thumb["formats"]["webp"]["signed_url"]
    assert webp.startswith("/images/{}/thumb.webp?v={}&expires=".format(IMAGE_ID, FORMAT_VERSION))
    assert signer().verify(urlsplit(webp).path, query(webp))
    assert original["signed_url"].startswith("/images/{}/original?expires=".format(IMAGE_ID))
    assert signer().verify("/images/{}/original".format(IMAGE_ID), query(original["signed_url"]))


def test_a_signature_is_good_for_one_path_until_its_expiry():
    url = signer().sign("/images/{}/thumb".format(IMAGE_ID), [("v", "x")])
    args = query(url)
    expires = int(args["expires"])
    assert expires >= 1_000_000 + 3600
    path = "/images/{}/thumb".format(IMAGE_ID)
    assert signer(now=expires).verify(path, args) == expires  # valid through its last second
    with pytest.raises(ExpiredSignature):
        signer(now=expires + 1).verify(path, args)
    for tampered_path, tampered in [
            (path.replace("thumb", "medium"), args),                       # another rendition
            ("/images/{}/thumb".format("cd" * 16), args),                 # another image
            (path, dict(args, expires=str(expires + 3600))),              # a later expiry
            (path, dict(args, signature=args["signature"][:-1] + "A")),   # a forged signature
            (path, dict(args, expires="soon")),
            (path, {"signature": args["signature"]})]:
        with pytest.raises(InvalidSignature):
            signer().verify(tampered_path, tampered)
    with pytest.raises(InvalidSignature):
        UrlSigner("another secret", 3600, clock=lambda: 1_000_000.0).verify(path, args)
    # v picks the cached version, not the right to read: it is not signed
    assert signer().verify(path, dict(args, v="other"))


def test_expiries_are_rounded_so_urls_stay_the_same_for_a_while():
    urls = {signer(now=1_000_000.0 + seconds).sign("/p") for seconds in range(0, 900, 60)}
    assert len(urls) <= 2
    for seconds in range(0, 3600, 7):
        expires = int(query(signer(now=1_000_000.0 + seconds).sign("/p"))["expires"])
        assert 3600 <= expires - (1_000_000 + seconds) <= 3600 + 900


def test_signed_urls_exist_only_with_api_keys_and_a_secret():
    assert signer_for(Settings()) is None
    assert signer_for(Settings(url_signing_secret="s")) is None  # everything is open anyway
    assert signer_for(Settings(api_keys=("k",))) is None
    made = signer_for(Settings(api_keys=("k",), url_signing_secret="s", url_signing_ttl=60))
    assert made.ttl == 60
    assert is_signed({"signature": "x"}) and is_signed({"expires": "1"}) and not is_signed({"v": "1"})


def test_settings_read_the_signing_secret_raw_and_the_ttl():
    settings = Settings.from_config({"URL_SIGNING_SECRET": "0123", "URL_SIGNING_TTL": "120"})
    assert (settings.url_signing_secret, settings.url_signing_ttl) == ("0123", 120.0)
    assert "0123" not in repr(settings)
    with pytest.raises(ValueError):
        Settings.from_config({"URL_SIGNING_TTL": "0"})


@pytest.mark.parametrize("immutable, shared, valid_until, expected", [
    (True, True, None, "public, max-age=31536000, immutable"),
    (True, False, None, "private, max-age=31536000, immutable"),
    (False, True, None, "public, no-cache"),
    (False, False, None, "private, no-cache"),
    (True, True, 1_000_600, "public, max-age=600, immutable"),   # no longer than the signature
    (True, True, 999_000, "public, max-age=0, immutable"),
])
def test_cache_control(immutable, shared, valid_until, expected):
    assert cache_control(immutable, shared, valid_until, now=1_000_000) == expected


def test_a_stale_version_leads_to_the_current_one_keeping_the_signature():
    location = current_version_location(
        "/images/x/thumb", [("v", "old"), ("expires", "9"), ("signature", "s")], "new", "https://i.example")
    assert location == "https://i.example/images/x/thumb?v=new&expires=9&signature=s"
