"""Originals as stored: personal metadata stripped and trailing bytes dropped, losslessly.

A photo's EXIF says where it was taken and with what; comments and XMP may
carry names and e-mail addresses; bytes after the image's end can carry
anything (free file hosting).  ``stored_form`` rewrites an upload into what
storage keeps and ``/original`` serves, copying the compressed image data
untouched:

- JPEG: keeps JFIF (APP0), the ICC profile (APP2 ``ICC_PROFILE``), Adobe's
  colour-transform flag (APP14) and every coding segment; EXIF (APP1)
  becomes a minimal EXIF with the orientation alone, so the picture stays
  upright; XMP, IPTC/Photoshop (APP13), other APPn, comments, and
  everything after the end-of-image marker (also MPO's extra pictures) go.
- PNG: keeps the chunks that define or colour the pixels (and animation);
  text, time, eXIf (but its orientation), private chunks and anything after
  IEND go.
- WebP: keeps image, alpha, animation and ICC chunks; EXIF becomes the
  orientation alone, XMP goes (the VP8X flags follow); bytes past the RIFF
  size go.
- GIF: keeps the image blocks, graphic control and the NETSCAPE/ANIMEXTS loop
  extension; comments, plain text, other application extensions and
  anything after the trailer go.
- BMP: bytes past the file size in its header go.
- HEIF (phone photos) and AVIF: the Exif and XMP items are blanked in place
  (an Exif item keeps a valid but empty TIFF block, XMP becomes spaces), so
  no offset moves; the picture's rotation lives in its own boxes, not EXIF.
- TIFF: stored as uploaded (its metadata sits in the same directories as the
  image's own tags); README says so.

A structure this parser cannot follow is stored as uploaded rather than
refused: Pillow, which accepted its header, judges the pixels when rendering.
"""
import io
import re
import struct

from PIL import Image

_ORIENTATION_TAG = 0x0112
_EXIF_PREFIX = b"Exif\x00\x00"

STRIPPABLE = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"})


class _Unparseable(Exception):
    """The file's structure is not what its format says; store it as it is."""


def stored_form(data, image_format, orientation=1):
    """The bytes to store for an upload of ``image_format``; ``data`` itself if nothing changes."""
    strip = _STRIPPERS.get(image_format)
    if strip is None:
        return data
    try:
        stripped = strip(memoryview(data), orientation)
    except (_Unparseable, struct.error, IndexError, ValueError):
        return data
    return data if stripped == data else stripped


# -- JPEG ------------------------------------------------------------------------

_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _strip_jpeg(view, orientation):
    if bytes(view[:2]) != b"\xff\xd8":
        raise _Unparseable
    out = io.BytesIO()
    out.write(b"\xff\xd8")
    position, wrote_exif = 2, False
    data = view.obj
    while True:
        while view[position] == 0xFF and view[position + 1] == 0xFF:
            position += 1  # fill bytes before a marker
        if view[position] != 0xFF:
            raise _Unparseable
        marker = view[position + 1]
        if marker == 0xD9:  # end of image: nothing after it is kept
            out.write(b"\xff\xd9")
            return out.getvalue()
        if marker in _STANDALONE:
            out.write(view[position:position + 2])
            position += 2
            continue
        length = struct.unpack(">H", view[position + 2:position + 4])[0]
        end = position + 2 + length
        if length < 2 or end > len(view):
            raise _Unparseable
        segment = view[position:end]
        if marker == 0xE1 and bytes(segment[4:10]) == b"Exif\x00\x00":
            if not wrote_exif and orientation != 1:
                out.write(_jpeg_orientation_segment(orientation))
                wrote_exif = True
        elif _keep_jpeg_segment(marker, segment):
            out.write(segment)
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            match = _ENTROPY_END.search(data, end)
            if match is None:
                out.write(view[end:])  # no end marker: a truncated file, kept as it is
                return out.getvalue()
            out.write(view[end:match.start()])
            end = match.start()
        position = end


def _keep_jpeg_segment(marker, segment):
    if marker == 0xE0:  # JFIF / JFXX
        return True
    if marker == 0xE2:
        return bytes(segment[4:16]) == b"ICC_PROFILE\x00"
    if marker == 0xEE:
        return bytes(segment[4:9]) == b"Adobe"
    return not (0xE1 <= marker <= 0xEF or marker == 0xFE)  # other APPn, COM


def _minimal_exif(orientation):
    """A TIFF-structured EXIF block holding the orientation alone (no ``Exif\\0\\0`` prefix)."""
    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = orientation
    return exif.tobytes()[len(_EXIF_PREFIX):]


def _jpeg_orientation_segment(orientation):
    payload = _EXIF_PREFIX + _minimal_exif(orientation)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


# -- PNG ---------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEPT = frozenset({
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT",
    b"sRGB", b"cICP", b"mDCv", b"cLLi", b"bKGD", b"hIST", b"pHYs", b"acTL", b"fcTL", b"fdAT",
})


def _strip_png(view, orientation):
    if bytes(view[:8]) != _PNG_SIGNATURE:
        raise _Unparseable
    out = io.BytesIO()
    out.write(_PNG_SIGNATURE)
    position, wrote_exif = 8, False
    while True:
        length, kind = struct.unpack(">I4s", view[position:position + 8])
        end = position + 12 + length
        if end > len(view):
            raise _Unparseable
        if kind in _PNG_KEPT:
            out.write(view[position:end])
        elif kind == b"eXIf" and orientation != 1 and not wrote_exif:
            out.write(_png_chunk(b"eXIf", _minimal_exif(orientation)))
            wrote_exif = True
        if kind == b"IEND":
            return out.getvalue()
        position = end


def _png_chunk(kind, payload):
    import zlib

    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


# -- WebP --------------------------------------------------------------------------

_WEBP_KEPT = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"})
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04


def _strip_webp(view, orientation):
    if bytes(view[:4]) != b"RIFF" or bytes(view[8:12]) != b"WEBP":
        raise _Unparseable
    riff_end = 8 + struct.unpack("<I", view[4:8])[0]
    if riff_end > len(view):
        raise _Unparseable
    chunks, exif = [], b""
    position = 12
    while position + 8 <= riff_end:
        kind, size = struct.unpack("<4sI", view[position:position + 8])
        end = position + 8 + size + (size & 1)
        if end > riff_end:
            raise _Unparseable
        if kind in _WEBP_KEPT:
            chunks.append(bytearray(view[position:end]))
        elif kind == b"EXIF" and orientation != 1:
            exif = _minimal_exif(orientation)
        position = end
    for chunk in chunks:
        if bytes(chunk[:4]) == b"VP8X":
            chunk[8] &= ~(_VP8X_XMP | (0 if exif else _VP8X_EXIF)) & 0xFF
    if exif:  # the EXIF chunk comes after the image data (WebP container spec)
        chunks.append(b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\x00" * (len(exif) & 1))
    body = b"WEBP" + b"".join(bytes(chunk) for chunk in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# -- GIF -----------------------------------------------------------------------------

_GIF_LOOP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _strip_gif(view, orientation):
    if bytes(view[:3]) != b"GIF":
        raise _Unparseable
    flags = view[10]
    position = 13 + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0)
    out = io.BytesIO()
    out.write(view[:position])
    while True:
        block = view[position]
        if block == 0x3B:  # trailer: nothing after it is kept
            out.write(b"\x3b")
            return out.getvalue()
        if block == 0x2C:  # image descriptor (+ local colour table) + LZW data
            image_flags = view[position + 9]
            start = position
            position += 10 + (3 * 2 ** ((image_flags & 0x07) + 1) if image_flags & 0x80 else 0)
            position = _skip_sub_blocks(view, position + 1)  # after the LZW minimum code size
            out.write(view[start:position])
        elif block == 0x21:
            label, start = view[position + 1], position
            position = _skip_sub_blocks(view, position + 2)
            if label == 0xF9 or (label == 0xFF and bytes(view[start + 3:start + 14]) in _GIF_LOOP_APPS):
                out.write(view[start:position])
        else:
            raise _Unparseable


def _skip_sub_blocks(view, position):
    while True:
        size = view[position]
        position += 1 + size
        if size == 0:
            return position


# -- BMP -----------------------------------------------------------------------------

def _strip_bmp(view, orientation):
    declared = struct.unpack("<I", view[2:6])[0]
    if bytes(view[:2]) != b"BM" or not 26 <= declared <= len(view):
        raise _Unparseable
    return bytes(view[:declared])


# -- HEIF and AVIF (ISO base media file format) -------------------------------------

def _strip_isobmff(view, orientation):
    data = bytearray(view)
    meta = _box(data, 0, len(data), b"meta")
    if meta is None:
        raise _Unparseable
    children = meta[0] + 4, meta[1]  # a full box: version and flags first
    infos, locations = _box(data, *children, b"iinf"), _box(data, *children, b"iloc")
    if infos is None or locations is None:
        raise _Unparseable
    personal = _personal_items(data, *infos)
    idat = _box(data, *children, b"idat")
    for item_id, kind in personal.items():
        for start, length in _item_extents(data, *locations, item_id, idat):
            if start + length > len(data):
                raise _Unparseable
            data[start:start + length] = _blank(kind, length)
    return bytes(data)


def _blank(kind, length):
    if kind == "exif" and length >= 4 + 26:
        tiff = Image.Exif().tobytes()[len(_EXIF_PREFIX):]  # a valid TIFF block with no tag
        return (b"\x00\x00\x00\x00" + tiff).ljust(length, b"\x00")
    return b" " * length if kind == "xmp" else b"\x00" * length


def _boxes(data, start, end):
    """``(type, content start, content end)`` of each box in ``data[start:end]``."""
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8:start + 16])[0], 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            raise _Unparseable
        yield kind, start + header, start + size
        start += size


def _box(data, start, end, wanted):
    for kind, content_start, content_end in _boxes(data, start, end):
        if kind == wanted:
            return content_start, content_end
    return None


def _personal_items(data, start, end):
    """{item id: "exif" | "xmp"} of the items an ``iinf`` box lists."""
    version = data[start]
    position = start + 4 + (2 if version == 0 else 4)
    items = {}
    for kind, content_start, content_end in _boxes(data, position, end):
        if kind != b"infe" or data[content_start] < 2:
            continue
        entry_version = data[content_start]
        cursor = content_start + 4
        id_size = 2 if entry_version == 2 else 4
        item_id = int.from_bytes(data[cursor:cursor + id_size], "big")
        cursor += id_size + 2  # item_protection_index
        item_type = bytes(data[cursor:cursor + 4])
        cursor += 4
        name_end = data.index(0, cursor, content_end)
        if item_type == b"Exif":
            items[item_id] = "exif"
        elif item_type == b"mime":
            content_type = bytes(data[name_end + 1:data.index(0, name_end + 1, content_end)])
            if b"xmp" in content_type or b"rdf+xml" in content_type:
                items[item_id] = "xmp"
    return items


def _item_extents(data, start, end, wanted_id, idat):
    """``(file offset, length)`` of each extent of item ``wanted_id`` in an ``iloc`` box."""
    version = data[start]
    cursor = start + 4
    offset_size, length_size = data[cursor] >> 4, data[cursor] & 0x0F
    base_size, index_size = data[cursor + 1] >> 4, (data[cursor + 1] & 0x0F if version in (1, 2) else 0)
    cursor += 2
    count_size = 2 if version < 2 else 4
    count = int.from_bytes(data[cursor:cursor + count_size], "big")
    cursor += count_size
    read = lambda size: (int.from_bytes(data[cursor:cursor + size], "big"), cursor + size)  # noqa: E731
    for _ in range(count):
        item_id, cursor = read(2 if version < 2 else 4)
        method = 0
        if version in (1, 2):
            method, cursor = read(2)
            method &= 0x0F
        _reference, cursor = read(2)
        base, cursor = read(base_size)
        extent_count, cursor = read(2)
        extents = []
        for _ in range(extent_count):
            _index, cursor = read(index_size)
            offset, cursor = read(offset_size)
            length, cursor = read(length_size)
            extents.append((base + offset, length))
        if cursor > end:
            raise _Unparseable
        if item_id != wanted_id:
            continue
        if method == 1:  # inside the idat box
            if idat is None:
                raise _Unparseable
            return [(idat[0] + offset, length) for offset, length in extents]
        if method != 0:
            raise _Unparseable
        return extents
    return []


_STRIPPERS = {"JPEG": _strip_jpeg, "PNG": _strip_png, "WEBP": _strip_webp,
              "GIF": _strip_gif, "BMP": _strip_bmp, "HEIF": _strip_isobmff, "AVIF": _strip_isobmff}
