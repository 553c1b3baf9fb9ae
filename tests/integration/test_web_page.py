"""The web page's files over real HTTP: public, typed, and locked to this origin."""
import pytest

from imagepipe.web.page import ASSETS, WEB_ROOT
from services.gateway import GatewayService
from services.storage import StorageService

KEY = "page-test-key"


@pytest.fixture
def gateway_with_keys(runner_factory, pipeline_config):
    pipeline_config["API_KEYS"] = KEY
    runner = runner_factory(pipeline_config, GatewayService, StorageService)
    runner.start()
    return runner


def test_the_page_and_its_files_are_public_even_with_api_keys(gateway_with_keys, web):
    page = web.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.content == (WEB_ROOT / "index.html").read_bytes()
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"

    for name, content_type in ASSETS.items():
        response = web.get("/static/" + name)
        assert response.status_code == 200, name
        assert response.headers["Content-Type"] == content_type
        assert response.content == (WEB_ROOT / name).read_bytes()
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    # everything else still needs the key
    assert web.get("/images").status_code == 401
    assert web.get("/images", headers={"Authorization": "Bearer " + KEY}).status_code == 200


def test_files_revalidate_with_their_etag(gateway_with_keys, web):
    first = web.get("/static/app.js")
    assert first.headers["Cache-Control"] == "no-cache"
    again = web.get("/static/app.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", ["/static/missing.js", "/static/..%2Fsettings.py", "/static/"])
def test_unknown_files_are_404_json(gateway_with_keys, web, path):
    response = web.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
