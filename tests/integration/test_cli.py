"""``python -m imagepipe`` as a user runs it, against the real pipeline."""
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from PIL import Image

from services.gateway import GatewayService
from services.imaging import ImagingService
from services.storage import StorageService
from tests.helpers import REPO_ROOT, make_jpeg, make_png, wait_for_status

THUMB = {"width": 64, "height": 64, "fit": "contain", "format": "webp", "quality": 80}
TINY = {"width": 16, "height": 16, "fit": "cover", "format": "png", "quality": 80}


def run_cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "imagepipe", *args], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=timeout)


def image_folder(root):
    folder = root / "photos"
    (folder / "nested").mkdir(parents=True)
    (folder / "beach.jpg").write_bytes(make_jpeg(1200, 800, color=(20, 120, 220)))
    (folder / "nested" / "logo.png").write_bytes(make_png(400, 300))
    # an image extension, but not an image: the server refuses it
    (folder / "nested" / "notes.jpg").write_bytes(b"shopping list: milk, eggs\n")
    # no image extension: the folder walk leaves it out
    (folder / "README.txt").write_text("holiday photos\n")
    return folder


def live_streams_opened(web):
    text = web.get("/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "imagepipe_worker_seconds_count"
               and sample.labels.get("entrypoint") == "image_events")


def test_upload_folder_and_wait_prints_renditions_and_rejections(pipeline, base_url, web,
                                                                 tmp_path):
    folder = image_folder(tmp_path)
    streams_before = live_streams_opened(web)
    result = run_cli("upload", str(folder), "--wait", "--url", base_url)

    assert result.returncode == 1, result.stdout + result.stderr  # one file was rejected
    assert "skipped 1 file(s) without an image extension" in result.stderr
    assert "uploading" in result.stderr and "processing" in result.stderr  # the progress bars
    lines = result.stdout.splitlines()
    rejected = [line for line in lines if line.startswith(str(folder / "nested" / "notes.jpg"))]
    assert len(rejected) == 1 and "rejected (unsupported_format)" in rejected[0], lines
    done = [line for line in lines if line.endswith(" done")]
    assert sorted(line.split(":")[0] for line in done) == sorted(
        [str(folder / "beach.jpg"), str(folder / "nested" / "logo.png")])
    urls = [line.split(": ", 1)[1] for line in lines if line.startswith("  ")]
    assert len(urls) == 4  # thumb and medium of each image
    for url in urls:
        assert url.startswith(base_url + "/images/")
        download = requests.get(url, timeout=10)
        assert download.status_code == 200
        image = Image.open(io.BytesIO(download.content))
        assert image.format == "WEBP" and max(image.size) <= 1024
    # it waited on the live status stream of each image, not by polling
    assert live_streams_opened(web) - streams_before >= 2


def test_upload_without_wait_reports_the_ids(pipeline, base_url, web, tmp_path):
    photo = tmp_path / "one.jpg"
    photo.write_bytes(make_jpeg(300, 200, color=(1, 2, 250)))
    result = run_cli("upload", str(photo), "--url", base_url, "--quiet")
    assert result.returncode == 0, result.stderr
    path, image_id, status = result.stdout.split()
    assert path == str(photo) + ":" and status == "pending"
    assert wait_for_status(web, image_id)["status"] == "done"


def test_wait_reports_a_failed_image_with_its_reason(pipeline, base_url, tmp_path):
    data = make_jpeg(1200, 900, color=(200, 10, 10))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(data[: len(data) // 3])  # header fine, pixels cut off
    result = run_cli("upload", str(broken), "--wait", "--url", base_url)
    assert result.returncode == 1
    assert " failed: " in result.stdout and "truncated" in result.stdout, result.stdout


def test_status_prints_the_image_json(pipeline, base_url, web, tmp_path):
    image_id = web.post("/upload", files={"image": ("a.png", make_png())}).json()["id"]
    wait_for_status(web, image_id)
    result = run_cli("status", image_id, "--url", base_url)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["id"] == image_id and status["status"] == "done"
    assert set(status["variants"]) == {"thumb", "medium"}

    missing = run_cli("status", "0" * 32, "--url", base_url)
    assert missing.returncode == 1 and "404 not_found" in missing.stderr


def test_delete_erases_images_and_reports_unknown_ones(pipeline, pipeline_config, base_url, web):
    image_id = web.post("/upload", files={"image": ("a.png", make_png(90, 60))}).json()["id"]
    wait_for_status(web, image_id)
    result = run_cli("delete", image_id, "0" * 32, "--url", base_url)
    assert result.returncode == 1, result.stdout + result.stderr  # one of the two was unknown
    assert result.stdout.splitlines() == [
        "{}: deleted".format(image_id),
        "{}: 404 not_found: no image with id '{}'".format("0" * 32, "0" * 32)]
    assert web.get("/images/" + image_id).status_code == 404
    storage_root = Path(pipeline_config["STORAGE_ROOT"])
    assert [path for path in storage_root.rglob("*") if image_id in str(path)] == []


def operator_cli(config, *args):
    """``imagepipe reprocess|prune``: the repository's config.yaml, the test's broker."""
    return run_cli(*args, "--config", str(REPO_ROOT / "config.yaml"), "--amqp-uri", config["AMQP_URI"])


def test_reprocess_and_prune_follow_the_presets(runner_factory, pipeline_config, base_url, web):
    services = (GatewayService, ImagingService, StorageService)
    first = runner_factory(dict(pipeline_config, PRESETS={"thumb": THUMB, "old": THUMB}), *services)
    first.start()
    image_ids = [web.post("/upload", files={"image": ("a.jpg", make_jpeg(200, 150, color=(n, n, 9)))}
                          ).json()["id"] for n in (1, 99)]
    for image_id in image_ids:
        wait_for_status(web, image_id)
    first.stop()
    runner_factory(dict(pipeline_config, PRESETS={"thumb": THUMB, "tiny": TINY}), *services).start()

    reprocessed = operator_cli(pipeline_config, "reprocess")
    assert reprocessed.returncode == 0, reprocessed.stdout + reprocessed.stderr
    assert reprocessed.stdout == "enqueued 2 reprocess jobs\n"
    assert "reprocessing" in reprocessed.stderr and "2/2" in reprocessed.stderr  # the progress bar
    for image_id in image_ids:
        assert wait_for_presets(web, image_id, {"thumb", "old", "tiny"})

    listed = operator_cli(pipeline_config, "prune")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("old.webp: 2 renditions, ")
    assert wait_for_presets(web, image_ids[0], {"thumb", "old", "tiny"})  # listing deletes nothing
    pruned = operator_cli(pipeline_config, "prune", "--delete", "--quiet")
    assert pruned.returncode == 0 and pruned.stdout.endswith("deleted 2 renditions\n"), pruned.stdout
    for image_id in image_ids:
        assert set(web.get("/images/" + image_id).json()["variants"]) == {"thumb", "tiny"}
    again = operator_cli(pipeline_config, "prune")
    assert again.stdout == "no renditions of presets that no longer exist\n"


def test_operator_commands_without_storage_fail_in_one_line(pipeline_config):
    pipeline_config["AMQP_URI"] = "amqp://guest:guest@127.0.0.1:9/"
    result = operator_cli(pipeline_config, "reprocess")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("imagepipe: cannot reach the broker at amqp://guest@127.0.0.1:9/")


def wait_for_presets(web, image_id, presets, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(web.get("/images/" + image_id).json()["variants"]) == presets:
            return True
        time.sleep(0.1)
    raise AssertionError("image {} never had exactly {}".format(image_id, presets))


def test_api_key_is_sent(pipeline_config, request, base_url, tmp_path):
    pipeline_config["API_KEYS"] = "cli-key-1"
    request.getfixturevalue("pipeline")
    photo = tmp_path / "keyed.png"
    photo.write_bytes(make_png(64, 64))
    refused = run_cli("upload", str(photo), "--url", base_url, "--quiet")
    assert refused.returncode == 1 and "rejected (unauthorized)" in refused.stdout
    accepted = run_cli("upload", str(photo), "--wait", "--url", base_url, "--api-key", "cli-key-1")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.splitlines()[0].endswith(" done")


def test_unreachable_gateway_is_one_line_not_a_traceback(tmp_path):
    photo = tmp_path / "x.png"
    photo.write_bytes(make_png(8, 8))
    result = run_cli("upload", str(photo), "--url", "http://127.0.0.1:9", "--quiet")
    assert result.returncode == 1
    assert "cannot reach" in result.stdout and "Traceback" not in result.stderr


class GatewayWithoutEvents(GatewayService):
    """A gateway from before live status: GET /images/<id>/events is no route."""

    def image_events(self, request, image_id):  # not an entrypoint any more
        raise AssertionError("unreachable")


def test_wait_polls_a_gateway_without_live_status(runner_factory, pipeline_config, base_url,
                                                  web, tmp_path):
    runner = runner_factory(pipeline_config, GatewayWithoutEvents, ImagingService, StorageService)
    runner.start()
    photo = tmp_path / "polled.jpg"
    photo.write_bytes(make_jpeg(640, 480, color=(9, 99, 199)))
    image_id = web.post("/upload", files={"image": ("p.jpg", photo.read_bytes())}).json()["id"]
    assert web.get("/images/{}/events".format(image_id)).status_code == 404  # really gone

    result = run_cli("upload", str(photo), "--wait", "--url", base_url, "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "{}: {} done".format(photo, image_id)
    assert len([line for line in result.stdout.splitlines() if line.startswith("  ")]) == 2
