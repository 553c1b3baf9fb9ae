"""Pillow's real-world test images in ../shared/testdata/images (never copied here).

Set IMAGE_CORPUS to use another location. Tests that need the corpus fail,
rather than skip, when it is missing: a skipped test must not pass as green.
"""
import csv
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def corpus_dir():
    path = Path(os.environ.get("IMAGE_CORPUS", REPO_ROOT.parent / "shared" / "testdata" / "images"))
    if not (path / "MANIFEST.tsv").is_file():
        raise AssertionError(
            "the image corpus is missing at {}; set IMAGE_CORPUS to the folder with "
            "MANIFEST.tsv".format(path))
    return path


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
