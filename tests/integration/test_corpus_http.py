"""Every file of Pillow's corpus through the real HTTP endpoint and services.

Expectations from MANIFEST.tsv: `valid` files in an allowed format end `done`
(HEIF among them, through pillow-heif: tests/corpus.py; other valid formats
are refused with 415, a documented reason); `invalid`,
`bomb` and `fuzz` files are refused at upload or end `failed` -- except fuzz
reproducers that Pillow itself now decodes fine (pillow_outcome `ok`).
No file may produce a 5xx, hang, or take a service down -- nor take much
memory: the services run in this process, the decoding in their render
worker processes (children of this one), and both are measured.

Marked ``corpus``: runs whenever the corpus is found.
"""
import collections
import os
import resource

import pytest

from harness.procstat import PeakMemory, render_workers
from imagepipe.rendering.presets import DEFAULT_FORMATS
from tests.corpus import expected_format, manifest, read
from tests.helpers import make_jpeg, post_upload, wait_for_status

pytestmark = pytest.mark.corpus
# the BLP fuzz file alone takes 655 MB where nothing guards the decoder
MEMORY_LIMIT_MB = 600

REFUSALS = {400, 413, 415, 422}
# Stored originals keep the first picture of an MPO (later ones are bytes
# after the primary image's end, dropped at upload): an MPO whose broken part
# is only a later picture is stored as the sound JPEG it starts with.
SOUND_ONCE_STRIPPED = {"sugarshack_no_data.mpo"}


def outcome_of(web, row):
    response = post_upload(web, read(row["file"]), row["file"])
    assert response.headers["Content-Type"] == "application/json", row["file"]
    body = response.json()
    if response.status_code != 202:
        assert response.status_code in REFUSALS, (row["file"], response.status_code, body)
        assert set(body) == {"error", "message"} and body["message"], body
        assert "Traceback" not in body["message"] and "/work" not in body["message"]
        return "refused {} {}".format(response.status_code, body["error"])
    status = wait_for_status(web, body["id"], timeout=60)
    if status["status"] == "failed":
        assert status["error"] and "Traceback" not in status["error"], status
    return status["status"]


def test_every_corpus_file_gets_its_expected_outcome(pipeline, web):
    table = collections.defaultdict(collections.Counter)
    unexpected = []
    with PeakMemory(lambda: render_workers(os.getpid())) as workers:
        outcomes = [(row, outcome_of(web, row)) for row in manifest()]
    for row, outcome in outcomes:
        table[row["category"]][outcome.split(" ")[0] if outcome.startswith("refused") else outcome] += 1
        if row["category"] == "valid":
            wanted = "done" if expected_format(row) in DEFAULT_FORMATS else "refused 415"
            ok = outcome.startswith(wanted)
        elif row["category"] == "fuzz" and row["pillow_outcome"] == "ok":
            ok = True  # Pillow decodes it correctly; rendering it is fine
        elif row["file"] in SOUND_ONCE_STRIPPED:
            ok = outcome == "done"
        else:
            ok = outcome == "failed" or outcome.startswith("refused")
        if not ok:
            unexpected.append((row["category"], row["file"], outcome))
    print("\noutcomes by category:")
    for category, counts in sorted(table.items()):
        print("  {:8} {}".format(category, dict(counts)))
    print("render workers' peak RSS (MB):", sorted(round(mb) for mb in workers.mb.values()))
    assert unexpected == []
    assert sum(table["valid"].values()) > 40 and table["valid"]["done"] > 40

    # the services are still up and a normal upload right after still succeeds
    for container in pipeline.containers:
        assert container._died.ready() is False, container.service_name
    response = web.post("/upload", files={"image": ("after.jpg", make_jpeg(320, 200))})
    assert wait_for_status(web, response.json()["id"])["status"] == "done"
    # the render workers decoded every file (the pool replaces one that a file
    # made crash or run out of time or memory), each within the bound; and the
    # services' own process too
    assert workers.mb, "no render worker was seen"
    assert max(workers.mb.values()) < MEMORY_LIMIT_MB, workers.mb
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < MEMORY_LIMIT_MB
