"""Decoder work caps: count what a decoder would loop over, before any decoder runs.

A small file can be made expensive to decode without many pixels: a
progressive JPEG whose scan is repeated thousands of times costs ~30 ms of
CPU per scan at 49 MP; millions of empty JPEG segments, PNG chunks or GIF
sub-blocks cost seconds in Pillow's *header* parsers, which run on the
gateway's request path.  So the container structure is walked first, by
byte offsets alone (no Pillow, no decompression), and the walk stops one
past each limit: its own cost is bounded by the limits, not by the file.

* JPEG: segments (markers with a length) and scans (SOS) across every
  picture of the file (MPO files hold several); entropy-coded data is
  skipped with one C-speed regex search per scan.
* PNG: chunks of any type (IDAT, fdAT and ancillary alike) and APNG frame
  controls (fcTL), which may not outnumber the frame cap.
* GIF: blocks -- extensions, image descriptors and every data sub-block.

A walk that meets bytes it does not understand (truncation, garbage) stops
and leaves the verdict to Pillow, which reports corrupt files properly.
"""
import re
import struct
from dataclasses import dataclass

from imagepipe.errors import ImageTooComplex, TooManyPixels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK = struct.Struct(">I4s")
_JPEG_LENGTH = struct.Struct(">H")
# a marker: any number of 0xFF fill bytes, then a byte that is not 0x00
# (stuffing), 0xD0-0xD7 (restart markers inside scan data) or 0xFF
_JPEG_MARKER = re.compile(rb"\xff+([^\x00\xd0-\xd7\xff])")
# the same, found by search from inside scan data (fill bytes before it are
# skipped by the search itself; "\xff+" here would make it ten times slower)
_NEXT_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_SOI = re.compile(rb"\xff\xd8\xff")
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = frozenset(range(0xD0, 0xD9)) | {0x01}  # markers without a length field
# Without a cap, a 25 MB GIF of 1x1 frames (a million of them, 1 MP in all)
# costs 5 s to count on the request path and minutes to validate in render.
MAX_FRAMES = 1000


@dataclass(frozen=True)
class DecodeLimits:
    """Per-file caps (config.yaml: JPEG_MAX_SCANS, JPEG_MAX_SEGMENTS, PNG_MAX_CHUNKS, GIF_MAX_BLOCKS)."""

    jpeg_max_scans: int = 100
    jpeg_max_segments: int = 2000
    png_max_chunks: int = 10_000
    gif_max_blocks: int = 200_000


def check_structure(data, limits=DecodeLimits()):
    """Raise ``ImageTooComplex`` if ``data`` is over a structural limit; else None."""
    if data[:3] == b"\xff\xd8\xff":
        _check_jpeg(data, limits)
    elif data[:8] == PNG_SIGNATURE:
        _check_png(data, limits)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        _check_gif(data, limits)


def jpeg_counts(data, max_segments=None, max_scans=None):
    """``(segments, scans)`` of a JPEG/MPO byte string, stopping one past either maximum."""
    segments = scans = 0
    pos = 2  # after SOI
    size = len(data)
    while pos < size:
        if (max_segments is not None and segments > max_segments) or (
                max_scans is not None and scans > max_scans):
            break
        marker = _JPEG_MARKER.match(data, pos)
        if marker is None:
            break  # not a marker where one must be: Pillow judges the rest
        code = marker.group(1)[0]
        pos = marker.end()
        if code == _EOI:
            following = _JPEG_SOI.search(data, pos)  # the next picture of an MPO
            if following is None:
                break
            pos = following.start() + 2
            continue
        if code in _STANDALONE:
            continue
        if pos + 2 > size:
            break
        length = _JPEG_LENGTH.unpack_from(data, pos)[0]
        if length < 2:
            break
        segments += 1
        pos += length
        if code == _SOS:
            scans += 1
            following = _NEXT_JPEG_MARKER.search(data, pos)  # skip the entropy-coded data
            if following is None:
                break
            pos = following.start()
    return segments, scans


def _check_jpeg(data, limits):
    segments, scans = jpeg_counts(data, limits.jpeg_max_segments, limits.jpeg_max_scans)
    if scans > limits.jpeg_max_scans:
        raise ImageTooComplex("JPEG has more than {} scans; the limit is {}".format(
            limits.jpeg_max_scans, limits.jpeg_max_scans))
    if segments > limits.jpeg_max_segments:
        raise ImageTooComplex("JPEG has more than {} segments; the limit is {}".format(
            limits.jpeg_max_segments, limits.jpeg_max_segments))


def png_counts(data, max_chunks=None):
    """``(chunks, fcTL chunks)`` of a PNG byte string, stopping one past ``max_chunks``."""
    chunks = frame_controls = 0
    pos = len(PNG_SIGNATURE)
    size = len(data)
    while pos + _PNG_CHUNK.size <= size:
        if max_chunks is not None and chunks > max_chunks:
            break
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        chunks += 1
        if kind == b"fcTL":
            frame_controls += 1
        elif kind == b"IEND":
            break
        pos += _PNG_CHUNK.size + length + 4  # header, data, CRC
    return chunks, frame_controls


def _check_png(data, limits):
    chunks, frame_controls = png_counts(data, limits.png_max_chunks)
    if chunks > limits.png_max_chunks:
        raise ImageTooComplex("PNG has more than {} chunks; the limit is {}".format(
            limits.png_max_chunks, limits.png_max_chunks))
    if frame_controls > MAX_FRAMES:  # one fcTL per frame
        raise too_many_frames()


def gif_counts(data, max_blocks=None, max_images=None):
    """``(blocks, images)`` of a GIF: blocks are extensions, images and data sub-blocks.

    Stops one past either maximum.
    """
    size = len(data)
    if size < 13:
        return 0, 0
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    blocks = images = 0
    while pos < size and (max_blocks is None or blocks <= max_blocks) and (
            max_images is None or images <= max_images):
        introducer = data[pos]
        if introducer == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif introducer == 0x2C:  # image: descriptor, local colour table, LZW code size, sub-blocks
            if pos + 10 > size:
                break
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
            images += 1
        else:
            break  # the trailer, or bytes Pillow will judge
        blocks += 1
        while pos < size and (max_blocks is None or blocks <= max_blocks):
            length = data[pos]
            pos += 1 + length
            if length == 0:
                break
            blocks += 1
    return blocks, images


def _check_gif(data, limits):
    blocks, images = gif_counts(data, limits.gif_max_blocks, MAX_FRAMES)
    if images > MAX_FRAMES:
        raise too_many_frames()
    if blocks > limits.gif_max_blocks:
        raise ImageTooComplex("GIF has more than {} blocks; the limit is {}".format(
            limits.gif_max_blocks, limits.gif_max_blocks))


def too_many_frames():
    return TooManyPixels("image has more than {} frames; the limit is {}".format(MAX_FRAMES, MAX_FRAMES))
