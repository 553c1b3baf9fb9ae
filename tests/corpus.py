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


def manifest():
    with open(corpus_dir() / "MANIFEST.tsv", newline="") as manifest_file:
        return list(csv.DictReader(manifest_file, delimiter="\t"))


def read(name):
    return (corpus_dir() / name).read_bytes()
