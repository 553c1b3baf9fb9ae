"""Metrics recorders, the shared exporter, and log formatting (no broker)."""
import json
import logging
import os
import subprocess
import sys

import pytest
import requests
from prometheus_client import REGISTRY

from imagepipe.observability import logformat, metrics
from imagepipe.rendering.presets import Preset
from imagepipe.rendering.render import render
from imagepipe.storage.blobs import original_key, variant_key
from imagepipe.storage.blobs.files import FileBlobStore
from imagepipe.storage.catalog import Catalog
from imagepipe.settings import parse_metrics_address
from services.extensions.observability import Exporter
from tests.helpers import REPO_ROOT, make_jpeg

IMAGE_ID = "0123456789abcdef0123456789abcdef"


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("text, expected", [
    ("", None), (None, None), ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("0.0.0.0:0", ("0.0.0.0", 0)), (":9102", ("0.0.0.0", 9102)), ("[::1]:9100", ("::1", 9100)),
])
def test_metrics_address(text, expected):
    assert parse_metrics_address(text) == expected


@pytest.mark.parametrize("text", ["9100", "host:", "host:http", "host:70000"])
def test_bad_metrics_address_fails_at_start_up(text):
    with pytest.raises(ValueError, match="METRICS_ADDRESS"):
        parse_metrics_address(text)


def test_exporter_starts_once_and_stops_with_its_last_user():
    exporter = Exporter()
    exporter.acquire(("127.0.0.1", 0))
    host, port = exporter.address
    exporter.acquire(("127.0.0.1", 0))  # a second container in the same process
    assert exporter.address == (host, port)
    url = "http://{}:{}/metrics".format(host, port)
    exporter.release()
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 200 and "imagepipe_uploads_accepted_total" in answer.text
    exporter.release()
    assert exporter.address is None
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_exporter_disabled_without_address():
    exporter = Exporter()
    exporter.acquire(None)
    assert exporter.address is None
    exporter.release()


def test_metered_blob_store_counts_and_logs_each_write(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="imagepipe.observability.metrics")
    blobs = metrics.MeteredBlobStore(FileBlobStore(str(tmp_path)))
    originals = sample("imagepipe_storage_written_bytes_total", kind="original")
    variants = sample("imagepipe_storage_blob_writes_total", kind="variant")
    blobs.put(original_key(IMAGE_ID), b"x" * 1000)
    blobs.put(variant_key(IMAGE_ID, "thumb"), b"y" * 10)
    assert sample("imagepipe_storage_written_bytes_total", kind="original") - originals == 1000
    assert sample("imagepipe_storage_blob_writes_total", kind="variant") - variants == 1
    assert blobs.get(original_key(IMAGE_ID)) == b"x" * 1000  # everything else delegates
    logged = [record.getMessage() for record in caplog.records]
    assert any(IMAGE_ID + "/thumb (10 bytes)" in line for line in logged), logged


def test_catalog_gauges_count_each_database_once(tmp_path):
    catalog = Catalog.from_url("sqlite:///{}".format(tmp_path / "catalog.sqlite3"))
    same_database = Catalog.from_url("sqlite:///{}".format(tmp_path / "catalog.sqlite3"))
    info = {"format": "JPEG", "mime_type": "image/jpeg", "width": 4, "height": 3}
    catalog.add_image(IMAGE_ID, "ab" * 32, info, 1234)
    collector = metrics.CatalogCollector()
    assert list(collector.collect()) == []  # no storage in this process: no gauges
    collector.attach(catalog)
    collector.attach(same_database)
    families = {family.name: family for family in collector.collect()}
    images_by_status = {s.labels["status"]: s.value for s in families["imagepipe_stored_images"].samples}
    assert images_by_status == {"pending": 1, "processing": 0, "done": 0, "failed": 0}
    bytes_by_kind = {s.labels["kind"]: s.value for s in families["imagepipe_stored_bytes"].samples}
    assert bytes_by_kind == {"original": 1234, "variant": 0}
    collector.detach(catalog)
    assert len(list(collector.collect())) == 2  # the other container still has it
    collector.detach(same_database)
    assert list(collector.collect()) == []


def test_job_outcomes_count_only_jobs_that_finished_the_image():
    done = sample("imagepipe_jobs_finished_total", outcome="done")
    thumbs = sample("imagepipe_render_seconds_count", preset="thumb")
    outcome = {"status": "done", "changed": True, "seconds": 0.5,
               "render_seconds": {"thumb": 0.02}}
    metrics.job_finished(outcome)
    metrics.job_finished(dict(outcome, changed=False, render_seconds={}))  # a redelivery
    assert sample("imagepipe_jobs_finished_total", outcome="done") - done == 1
    assert sample("imagepipe_render_seconds_count", preset="thumb") - thumbs == 1


def test_render_reports_each_presets_time():
    presets = [Preset.from_config("big", {"width": 800, "height": 800}),
               Preset.from_config("small", {"width": 64, "height": 64})]
    renditions = render(make_jpeg(1600, 1200), presets)
    assert [rendition.preset for rendition in renditions] == ["big", "small"]
    assert all(0 < rendition.seconds < 10 for rendition in renditions)


def test_json_lines_carry_the_bound_context():
    record = logging.LogRecord("imaging", logging.INFO, __file__, 1, "image %s done", ("abc",), None)
    logformat.bind(correlation_id="gateway.upload.1", call_id="imaging.handle.2")
    try:
        logformat.ContextFilter().filter(record)
    finally:
        logformat.clear()
    entry = json.loads(logformat.formatter("json").format(record))
    assert entry["message"] == "image abc done"
    assert entry["correlation_id"] == "gateway.upload.1"
    assert entry["call_id"] == "imaging.handle.2"
    assert entry["level"] == "INFO" and entry["logger"] == "imaging"


def test_plain_lines_without_context_still_format():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello", (), None)
    line = logformat.formatter("plain").format(record)  # no filter ran
    assert line.endswith("WARNING x [-]: hello")


LOG_FROM_CONFIG = """
import logging, logging.config
from tests.helpers import load_config
from imagepipe.observability import logformat
logging.config.dictConfig(load_config()["LOGGING"])
logformat.bind(correlation_id="gateway.upload.42", call_id="storage.put_original.7")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("services.storage").exception("stored %s", "originals/ab/abc")
"""


@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_config_yaml_switches_the_log_format(log_format):
    result = subprocess.run(
        [sys.executable, "-c", LOG_FROM_CONFIG], cwd=REPO_ROOT, capture_output=True, text=True,
        env=dict(os.environ, LOG_FORMAT=log_format), timeout=60, check=True)
    lines = [line for line in result.stderr.splitlines() if "boom" in line or "stored" in line]
    if log_format == "json":
        entry = json.loads(lines[0])
        assert entry["message"] == "stored originals/ab/abc"
        assert entry["correlation_id"] == "gateway.upload.42"
        assert "ValueError: boom" in entry["exception"]
    else:
        assert "[gateway.upload.42]: stored originals/ab/abc" in lines[0]
        with pytest.raises(ValueError):
            json.loads(lines[0])
