"""Metrics and correlated logs of the real pipeline (real broker, HTTP, Pillow).

The metrics registry is per process and the test runner keeps one process,
so counters are compared before and after each test's uploads.
"""
import io
import json
import logging

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from imagepipe.observability import logformat
from services.extensions.observability import EXPORTER
from tests.helpers import make_jpeg, make_png, post_upload, wait_for_status, wait_until


def samples(text):
    """Prometheus text -> {(sample name, ((label, value), ...)): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped, name, **labels):
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def scrape(web):
    response = web.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


@pytest.fixture
def observed_pipeline(pipeline_config, request):
    """The pipeline with its process exporter on a free port."""
    pipeline_config["METRICS_ADDRESS"] = "127.0.0.1:0"
    return request.getfixturevalue("pipeline")


def test_metrics_count_uploads_jobs_renders_and_bytes(observed_pipeline, web):
    before = scrape(web)
    photos = [make_jpeg(1600, 1200, color=(10, 200, 30)), make_png(640, 480)]
    statuses = []
    for data in photos:
        response = post_upload(web, data)
        assert response.status_code == 202, response.text
        statuses.append(wait_for_status(web, response.json()["id"]))
    assert [status["status"] for status in statuses] == ["done", "done"]
    refused = post_upload(web, b"this is a text file, not an image", "notes.jpg")
    assert refused.status_code == 415 and refused.json()["error"] == "unsupported_format"
    truncated = make_jpeg(1200, 900, color=(90, 90, 250))
    broken = post_upload(web, truncated[: len(truncated) // 3])
    assert broken.status_code == 202, broken.text
    assert wait_for_status(web, broken.json()["id"])["status"] == "failed"

    after = scrape(web)
    assert delta(before, after, "imagepipe_uploads_accepted_total") == 3
    assert delta(before, after, "imagepipe_uploads_rejected_total",
                 reason="unsupported_format") == 1
    assert delta(before, after, "imagepipe_jobs_finished_total", outcome="done") == 2
    assert delta(before, after, "imagepipe_jobs_finished_total", outcome="failed") == 1
    assert delta(before, after, "imagepipe_job_seconds_count", outcome="done") == 2
    for preset in ("thumb", "medium"):
        # the failed image rendered nothing: two observations per preset
        assert delta(before, after, "imagepipe_render_seconds_count", preset=preset) == 2
        assert delta(before, after, "imagepipe_render_seconds_sum", preset=preset) > 0
        # every observation falls in some bucket, and the last bucket takes all
        assert delta(before, after, "imagepipe_render_seconds_bucket",
                     preset=preset, le="+Inf") == 2

    # storage: every blob written is counted with its size
    originals = photos + [broken_bytes(truncated)]
    variant_bytes = sum(variant["bytes"] for status in statuses
                        for variant in status["variants"].values())
    assert delta(before, after, "imagepipe_storage_blob_writes_total", kind="original") == 3
    assert delta(before, after, "imagepipe_storage_written_bytes_total",
                 kind="original") == sum(map(len, originals))
    assert delta(before, after, "imagepipe_storage_blob_writes_total", kind="variant") == 4
    assert delta(before, after, "imagepipe_storage_written_bytes_total",
                 kind="variant") == variant_bytes
    # catalog gauges: this test's storage is fresh, so they are absolute
    assert value(after, "imagepipe_stored_images", status="done") == 2
    assert value(after, "imagepipe_stored_images", status="failed") == 1
    assert value(after, "imagepipe_stored_bytes", kind="original") == sum(map(len, originals))
    assert value(after, "imagepipe_stored_bytes", kind="variant") == variant_bytes

    # latency: storage's side of each upload's registration (the claim-check
    # path: the gateway wrote the bytes itself), and the gateway's round trip
    assert delta(before, after, "imagepipe_worker_seconds_count", service="storage",
                 entrypoint="register_original", outcome="ok") == 3
    assert delta(before, after, "imagepipe_rpc_client_seconds_count",
                 method="storage.register_original") == 3
    assert delta(before, after, "imagepipe_worker_seconds_count", service="gateway",
                 entrypoint="upload", outcome="error") == 1


def broken_bytes(data):
    return data[: len(data) // 3]


def test_process_exporter_serves_the_same_registry(observed_pipeline, web):
    response = post_upload(web, make_jpeg(800, 600, color=(1, 100, 1)))
    assert wait_for_status(web, response.json()["id"])["status"] == "done"

    # three services in one runner: one exporter, started once
    host, port = EXPORTER.address
    assert port != 0
    exported = requests.get("http://{}:{}/metrics".format(host, port), timeout=10)
    assert exported.status_code == 200
    from_exporter = samples(exported.text)
    from_gateway = scrape(web)
    for name, labels in [("imagepipe_jobs_finished_total", {"outcome": "done"}),
                         ("imagepipe_render_seconds_count", {"preset": "thumb"}),
                         ("imagepipe_storage_blob_writes_total", {"kind": "variant"})]:
        assert value(from_exporter, name, **labels) >= 1
        assert value(from_exporter, name, **labels) == value(from_gateway, name, **labels)


def test_metrics_need_the_api_key_when_keys_are_set(pipeline_config, request, web):
    pipeline_config["API_KEYS"] = "scrape-key-1"
    request.getfixturevalue("pipeline")
    refused = web.get("/metrics")
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    allowed = web.get("/metrics", headers={"Authorization": "Bearer scrape-key-1"})
    assert allowed.status_code == 200
    assert "imagepipe_uploads_accepted_total" in allowed.text


class Lines(logging.Handler):
    """Formats records exactly as the console handler of config.yaml does."""

    def __init__(self, kind):
        super().__init__()
        self.stream = io.StringIO()
        self.setFormatter(logformat.formatter(kind))
        self.addFilter(logformat.ContextFilter())

    def emit(self, record):
        self.stream.write(self.format(record) + "\n")

    def json_lines(self):
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def json_log(caplog):
    caplog.set_level(logging.INFO)
    handler = Lines("json")
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def wait_for_line(handler, predicate, timeout=10.0):
    # imaging logs its line just after it marks the image done
    return wait_until(lambda: [entry for entry in handler.json_lines() if predicate(entry)], timeout,
                      lambda: "a matching log line in:\n" + handler.stream.getvalue())


def test_one_correlation_id_follows_an_upload_through_every_service(pipeline, web, json_log):
    response = post_upload(web, make_jpeg(1000, 700, color=(220, 220, 20)))
    image_id = response.json()["id"]
    assert wait_for_status(web, image_id)["status"] == "done"
    imaging_lines = wait_for_line(json_log, lambda entry: entry["message"].startswith(
        "image {} done".format(image_id)))

    entries = [entry for entry in json_log.json_lines() if image_id in entry["message"]]
    accepted = [entry for entry in entries if entry["message"].startswith("upload accepted")]
    assert len(accepted) == 1, entries
    correlation_id = accepted[0]["correlation_id"]
    assert correlation_id.startswith("gateway.upload.")
    stored = [entry for entry in entries if entry["message"].startswith("stored ")]
    assert {entry["message"].split()[1].split("/")[0] for entry in stored} == {
        "originals", "variants"}
    assert len(stored) == 3  # the original, thumb and medium
    # every line of this upload, from each service, carries the gateway's call id
    for entry in accepted + stored + imaging_lines:
        assert entry["correlation_id"] == correlation_id, entry
        assert set(entry) >= {"time", "level", "logger", "message", "call_id"}
    call_services = {entry["call_id"].split(".")[0] for entry in accepted + stored + imaging_lines}
    assert call_services == {"gateway", "storage", "imaging"}
    # the imaging line names each preset with its render time
    message = imaging_lines[0]["message"]
    assert "thumb " in message and "medium " in message and " s," in message
    # grep by the one id finds nothing from other uploads
    other = post_upload(web, make_jpeg(300, 200, color=(5, 5, 5))).json()["id"]
    wait_for_status(web, other)
    wait_for_line(json_log, lambda entry: entry["message"].startswith("image {} done".format(other)))
    followed = [entry for entry in json_log.json_lines()
                if entry.get("correlation_id") == correlation_id]
    assert not any(other in entry["message"] for entry in followed)


def test_dead_letters_and_redeliveries_are_counted(pipeline, pipeline_config, web):
    from nameko.standalone.events import event_dispatcher

    image_id = post_upload(web, make_jpeg(500, 400, color=(50, 60, 70))).json()["id"]
    assert wait_for_status(web, image_id)["status"] == "done"
    before = scrape(web)
    dispatch = event_dispatcher(pipeline_config)
    dispatch("gateway", "image_uploaded", {"id": image_id})  # a duplicate: nothing to do
    dispatch("gateway", "image_uploaded", {"id": "0" * 32})  # unknown image: dead-lettered
    def both_jobs_through():
        after = scrape(web)
        handled = delta(before, after, "imagepipe_worker_seconds_count", service="imaging",
                        entrypoint="handle_image_uploaded", outcome="ok")
        return after if handled >= 2 else None

    after = wait_until(both_jobs_through, 10, "both jobs handled")
    assert delta(before, after, "imagepipe_job_dead_letters_total") == 1
    assert delta(before, after, "imagepipe_job_failures_total", kind="permanent") == 1
    assert delta(before, after, "imagepipe_job_retries_total") == 0
    # neither job finished an image: the duplicate found it done already
    assert delta(before, after, "imagepipe_jobs_finished_total", outcome="done") == 0
    assert delta(before, after, "imagepipe_jobs_finished_total", outcome="failed") == 0
    assert delta(before, after, "imagepipe_worker_seconds_count", service="imaging",
                 entrypoint="handle_image_uploaded", outcome="ok") == 2
