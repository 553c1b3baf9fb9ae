"""The benchmark's paced phase re-uploads its images as new content."""
import io

from PIL import Image

from bench.images import BenchImage, tiny_jpeg
from bench.pipeline import multipart_bodies


def test_tagged_bodies_are_new_content_with_the_same_pixels(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(tiny_jpeg("photo"))
    image = BenchImage(path=path, width=64, height=48, size=path.stat().st_size)
    first, = multipart_bodies([image], "backlog")
    second, = multipart_bodies([image], "paced")
    assert first != second  # different bytes: different image ids, no de-duplication
    for body, _content_type in (first, second):
        start = body.index(b"\xff\xd8")  # the JPEG inside the multipart body
        with Image.open(io.BytesIO(body[start:])) as tagged, Image.open(path) as original:
            assert tagged.size == original.size
            assert tagged.tobytes() == original.tobytes()
