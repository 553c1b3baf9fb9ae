"""Hostile image files that cost far more to decode than their size says.

Built from Pillow output and bytes, shared by the tests (tests/unit/test_decode_limits.py,
tests/integration/test_decode_limits_http.py) and the benchmark
(``python -m bench.decode_caps``).  Every one is a file Pillow accepts when
the caps in ``imagepipe.rendering.structure`` are lifted.
"""
import io
import struct
import zlib

from PIL import Image


def make_progressive_jpeg(width, height, color=(120, 130, 140)):
    image = Image.new("RGB", (width, height), color)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, progressive=True)
    return out.getvalue()


def repeat_last_scan(jpeg, times):
    """``jpeg`` with its last scan (SOS segment and its data) repeated ``times`` more times.

    Still a valid JPEG -- a refinement scan may legally come again -- that
    makes the decoder pass over every coefficient once per copy: ~30 ms each
    at 49 MP, ~150 bytes each in the file.
    """
    last_sos = jpeg.rindex(b"\xff\xda")
    end = jpeg.rindex(b"\xff\xd9")
    return jpeg[:end] + jpeg[last_sos:end] * times + jpeg[end:]


def with_jpeg_comments(jpeg, count):
    """``jpeg`` with ``count`` empty COM segments after SOI (4 bytes each)."""
    return jpeg[:2] + b"\xff\xfe\x00\x02" * count + jpeg[2:]


def png_chunk(kind, data=b""):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_png_chunks(png, chunk, count):
    """``png`` with ``count`` copies of ``chunk`` right after IHDR."""
    after_ihdr = 8 + 12 + 13
    return png[:after_ihdr] + chunk * count + png[after_ihdr:]


def gif_of(frames, sub_blocks_per_comment=0):
    """A GIF of 1x1 frames, each after a comment extension of 1-byte sub-blocks."""
    header = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    comment = b"\x21\xfe" + b"\x01x" * sub_blocks_per_comment + b"\x00"
    frame = (b"\x21\xf9\x04\x00\x01\x00\x00\x00"            # graphic control extension
             b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"    # image descriptor, 1x1
             b"\x02\x02\x44\x01\x00")                          # LZW data
    return header + (comment + frame) * frames + b"\x3b"
