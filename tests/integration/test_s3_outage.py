"""A dead object store: storage calls fail in seconds and the gateway answers 503.

The S3 server (SeaweedFS, tests/s3server.py) is this test's own, so it may
kill it while gateway + imaging + storage run on real RabbitMQ.
"""
import time

import pytest

from tests.helpers import make_jpeg, wait_for_status


@pytest.fixture
def own_s3_server(tmp_path):
    """A SeaweedFS of this test's own, so that the test may kill it."""
    from tests.s3server import SeaweedS3

    server = SeaweedS3(tmp_path / "seaweedfs").start()
    yield server
    server.stop()


@pytest.fixture
def dying_s3_config(pipeline_config, own_s3_server, s3_bucket, monkeypatch):
    pipeline_config.update(own_s3_server.pipeline_settings(s3_bucket))
    for name, value in own_s3_server.credentials.items():
        monkeypatch.setenv(name, value)
    return pipeline_config


def test_dead_object_store_answers_503_fast(runner_factory, dying_s3_config, own_s3_server, web):
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService

    runner_factory(dying_s3_config, GatewayService, ImagingService, StorageService).start()
    accepted = web.post("/upload", files={"image": ("a.jpg", make_jpeg(200, 100))})
    assert accepted.status_code == 202, accepted.text
    image_id = accepted.json()["id"]
    wait_for_status(web, image_id)

    own_s3_server.stop()
    for request in (lambda: web.post("/upload", files={"image": ("b.jpg", make_jpeg(210, 100))}),
                    lambda: web.get("/images/{}/original".format(image_id))):
        started = time.monotonic()
        response = request()
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "service_unavailable"
        assert "Retry-After" in response.headers
        # storage's own verdict, well before the gateway's RPC deadline
        assert "object store" in response.json()["message"]
        assert elapsed < dying_s3_config["RPC_TIMEOUT"]
    # the catalog still answers: only the blobs are out of reach
    assert web.get("/images/{}".format(image_id)).status_code == 200
