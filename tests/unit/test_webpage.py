"""imagepipe.webpage (the page's static files) and the settings the page and streams use."""
import re

import pytest

from imagepipe.errors import NotFound
from imagepipe.settings import Settings
from imagepipe.web.page import ASSETS, PAGE, WEB_ROOT, WebAssets, security_headers


def test_every_listed_asset_is_served_with_its_type_and_a_content_etag():
    assets = WebAssets()
    for name, content_type in ASSETS.items():
        asset = assets.get(name)
        assert asset.data == (WEB_ROOT / name).read_bytes()
        assert asset.content_type == content_type
        assert re.fullmatch(r"[0-9a-f]{32}", asset.etag)
    assert len({assets.get(name).etag for name in ASSETS}) == len(ASSETS)


@pytest.mark.parametrize("name", ["../settings.py", "missing.js", "", "index.html/", "web/app.js"])
def test_anything_else_is_not_found(name):
    with pytest.raises(NotFound):
        WebAssets().get(name)


def test_the_page_references_only_served_assets_and_no_inline_code():
    page = (WEB_ROOT / PAGE).read_text()
    referenced = set(re.findall(r'(?:src|href)="/static/([^"]+)"', page))
    assert referenced == set(ASSETS) - {PAGE}
    # the CSP allows scripts and styles from files only
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert not re.search(r" on[a-z]+=", page)


def test_security_headers_allow_only_this_origin():
    headers = security_headers()
    policy = dict(part.split(" ", 1) for part in headers["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' blob:"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_public_url_origin_is_allowed_for_images_and_api_calls():
    policy = security_headers("https://images.example.com/base")["Content-Security-Policy"]
    assert "img-src 'self' blob: https://images.example.com;" in policy
    assert "connect-src 'self' https://images.example.com;" in policy


def test_live_stream_settings_default_and_validate():
    settings = Settings.from_config({})
    assert (settings.live_recheck_interval, settings.live_max_seconds) == (15.0, 300.0)
    settings = Settings.from_config({"LIVE_RECHECK_INTERVAL": "2.5", "LIVE_MAX_SECONDS": 60})
    assert (settings.live_recheck_interval, settings.live_max_seconds) == (2.5, 60.0)
    with pytest.raises(ValueError, match="LIVE_MAX_SECONDS must be a positive"):
        Settings.from_config({"LIVE_MAX_SECONDS": "-1"})


@pytest.mark.parametrize("name", ["events", "original"])
def test_route_names_cannot_be_preset_names(name):
    with pytest.raises(ValueError, match="reserved"):
        Settings.from_config({"PRESETS": {name: {"width": 10, "height": 10}}})
