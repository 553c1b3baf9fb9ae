"""Decoder work caps over HTTP: a hostile file is refused at upload, before storage."""
import pytest

from tests import corpus
from tests.helpers import make_progressive_jpeg, repeat_last_scan, wait_for_status


def test_a_jpeg_with_a_scan_repeated_2500_times_is_refused_at_upload(pipeline, web):
    hostile = repeat_last_scan(make_progressive_jpeg(7000, 7000), 2500)
    response = web.post("/upload", data=hostile, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413, response.text
    assert response.json() == {"error": "image_too_complex",
                               "message": "JPEG has more than 100 scans; the limit is 100"}
    assert web.get("/images").json()["images"] == []  # nothing stored, no job


@pytest.mark.corpus  # reads real-world files of the corpus
@pytest.mark.parametrize("name", ["app13-multiple.jpg", "icc_profile_big.jpg"])
def test_progressive_corpus_jpegs_still_pass(pipeline, web, name):
    response = web.post("/upload", files={"image": (name, corpus.read(name))})
    assert response.status_code == 202, response.text
    status = wait_for_status(web, response.json()["id"])
    assert status["status"] == "done", status
    assert set(status["variants"]) == {"thumb", "medium"}
