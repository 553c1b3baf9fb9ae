"""The benchmark re-uploads its images as new content (tagged bodies)."""
import io

from PIL import Image

from bench.images import BenchImage, tiny_jpeg
from bench.pipeline import multipart_bodies
from imagepipe.ids import content_sha256
from imagepipe.rendering.strip import stored_form


def jpeg_in(body):
    return body[body.index(b"\xff\xd8"):]  # the JPEG inside the multipart body


def test_tagged_bodies_are_new_content_of_the_same_size(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(tiny_jpeg("photo"))
    image = BenchImage(path=path, width=64, height=48, size=path.stat().st_size)
    (first, _), = multipart_bodies([image], "backlog")
    (second, _), = multipart_bodies([image], "paced")
    stored = [stored_form(jpeg_in(body), "JPEG") for body in (first, second, path.read_bytes())]
    # what the gateway keeps (no comments, no metadata) differs: new image ids
    assert len({content_sha256(data) for data in stored}) == 3
    for body in (first, second):
        with Image.open(io.BytesIO(jpeg_in(body))) as tagged, Image.open(path) as original:
            assert (tagged.size, tagged.mode) == (original.size, original.mode)
