"""Pillow's real-world test images in ../shared/testdata/images (never copied here).

Set IMAGE_CORPUS to use another location. Tests that read it carry the
``corpus`` marker (tests/conftest.py): they run whenever the corpus is
found; without it they are skipped with the reason below and the run's
summary says how to get it -- except under CI (``CI=true``), where a missing
corpus fails them.
"""
import csv
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOCATION = REPO_ROOT.parent / "shared" / "testdata" / "images"
HOW_TO_GET_IT = (
    "the corpus is Pillow's Tests/images subset described by MANIFEST.tsv; put the "
    "project's shared/testdata/images beside this repository (../shared/testdata/images) "
    "or set IMAGE_CORPUS=/path/to/the/folder/with/MANIFEST.tsv")


def corpus_location():
    return Path(os.environ.get("IMAGE_CORPUS") or DEFAULT_LOCATION)


def missing_reason():
    """Why the corpus cannot be used, or None when it is there."""
    path = corpus_location()
    if (path / "MANIFEST.tsv").is_file():
        return None
    source = "IMAGE_CORPUS" if os.environ.get("IMAGE_CORPUS") else "the default location"
    return "the image corpus is missing: no MANIFEST.tsv in {} ({})".format(path, source)


# The test being run, when it does not carry the ``corpus`` marker (set by
# tests/conftest.py): it may not read the corpus, or a bare clone would fail it.
unmarked_test = None


def corpus_dir():
    if unmarked_test is not None:
        raise AssertionError("{} reads the image corpus but is not marked "
                             "@pytest.mark.corpus".format(unmarked_test))
    reason = missing_reason()
    if reason:
        raise AssertionError("{}; {}".format(reason, HOW_TO_GET_IT))
    return corpus_location()


# MANIFEST.tsv describes what stock Pillow makes of each file; the pipeline
# also registers pillow-heif, which reads these (checked by opening them).
WITH_PILLOW_HEIF = {
    "hopper.heif": {"format_expected": "HEIF", "width": "128", "height": "128", "frames": "1",
                    "mode": "RGB", "pillow_outcome": "ok"},
}


def manifest():
    with open(corpus_dir() / "MANIFEST.tsv", newline="") as manifest_file:
        rows = list(csv.DictReader(manifest_file, delimiter="\t"))
    return [dict(row, **WITH_PILLOW_HEIF.get(row["file"], {})) for row in rows]


def expected_format(row):
    """The format the pipeline reports: an MPO is a JPEG to every viewer."""
    return "JPEG" if row["format_expected"] == "MPO" else row["format_expected"]


def read(name):
    return (corpus_dir() / name).read_bytes()
