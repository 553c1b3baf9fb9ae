"""Every file of Pillow's corpus through the real HTTP endpoint and services.

Expectations from MANIFEST.tsv: `valid` files in an allowed format end `done`
(other valid formats are refused with 415, a documented reason); `invalid`,
`bomb` and `fuzz` files are refused at upload or end `failed` -- except fuzz
reproducers that Pillow itself now decodes fine (pillow_outcome `ok`).
No file may produce a 5xx, hang, or take a service down.
"""
import collections
import resource

from imagepipe.rendering.presets import DEFAULT_FORMATS
from tests.corpus import manifest, read
from tests.helpers import make_jpeg, wait_for_status

REFUSALS = {400, 413, 415, 422}
# Stored originals keep the first picture of an MPO (later ones are bytes
# after the primary image's end, dropped at upload): an MPO whose broken part
# is only a later picture is stored as the sound JPEG it starts with.
SOUND_ONCE_STRIPPED = {"sugarshack_no_data.mpo"}


def expected_format(row):
    return "JPEG" if row["format_expected"] == "MPO" else row["format_expected"]


def outcome_of(web, row):
    response = web.post("/upload", files={"image": (row["file"], read(row["file"]))})
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
    for row in manifest():
        outcome = outcome_of(web, row)
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
    assert unexpected == []
    assert sum(table["valid"].values()) > 40 and table["valid"]["done"] > 40

    # the services are still up and a normal upload right after still succeeds
    for container in pipeline.containers:
        assert container._died.ready() is False, container.service_name
    response = web.post("/upload", files={"image": ("after.jpg", make_jpeg(320, 200))})
    assert wait_for_status(web, response.json()["id"])["status"] == "done"
    # everything ran in this process; the BLP fuzz file alone takes 655 MB unguarded
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < 600
