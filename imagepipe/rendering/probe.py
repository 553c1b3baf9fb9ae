"""Identify an image from its headers, within limits, never decoding pixels.

``probe`` runs on the gateway's request path; ``open_image`` and
``inspect`` are shared with ``imagepipe.rendering.render``.  Nothing here
touches nameko or eventlet.

Decisions worth knowing:

* MPO (multi-picture JPEG from cameras and phones) is reported as format
  "JPEG", ``image/jpeg``: it is a valid JPEG whose primary picture every
  viewer shows.  Its ``frames`` is the number of pictures in the MP index.
* ``frames`` is the header-level count for PNG (APNG), WebP, AVIF and MPO.
  GIF and TIFF have no count field, so the block/IFD chain is walked without
  decoding pixels, and at most one frame past ``MAX_FRAMES``; every other
  format counts as one frame.
* Limits: width * height * frames must not exceed ``max_pixels``, and there
  may be at most ``MAX_FRAMES`` frames (both answer 413, TooManyPixels).
  Pillow's own bomb check still applies on top (whichever is lower wins).
* Decoder work caps (``imagepipe.rendering.structure``: JPEG scans and
  segments, PNG chunks, GIF blocks) are checked on the raw bytes before
  Pillow parses anything: Pillow's own header parsers loop in Python over
  whatever count a file declares.  413, ImageTooComplex.
* EXIF orientation is read from the header, in ``probe`` and ``render``
  alike, so both report the same dimensions (a PNG eXIf chunk stored after
  the pixel data is therefore ignored).
"""
import io
import re
import struct
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, ImageCms

from imagepipe.errors import InvalidImage, TooManyPixels, UnsupportedFormat
from imagepipe.rendering.presets import DEFAULT_FORMATS
from imagepipe.rendering.structure import (
    MAX_FRAMES, DecodeLimits, check_structure, too_many_frames)

# What Pillow's parsers and decoders raise on damaged or hostile input
# (UnidentifiedImageError is an OSError).  MemoryError is left to propagate:
# the render worker that hit its memory limit is replaced, and the image is
# rejected as too large (imagepipe.rendering.pool).
DECODE_ERRORS = (
    OSError, ValueError, TypeError, SyntaxError, struct.error, EOFError,
    IndexError, KeyError, ArithmeticError,
    RuntimeError,  # libavif and libwebp bindings report bad streams this way
    ImageCms.PyCMSError,
)
BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_ICC_ERRORS = (ImageCms.PyCMSError, OSError, ValueError, TypeError)

# Plugins that know their frame count without decoding pixels (HEIF: the
# container's top-level images, listed in its header boxes).
_COUNTED_FRAMES = frozenset({"GIF", "PNG", "WEBP", "TIFF", "AVIF", "MPO", "HEIF"})

# Same table as ImageOps.exif_transpose.
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112

_policy_lock = threading.Lock()
_policy_applied = False


def apply_pillow_policy():
    """Pillow set up for untrusted input; once per process, before the first image.

    Every plugin is registered up front, so concurrent opens never race on
    Pillow's lazy plugin imports (pillow-heif's HEIF/HEIC opener included,
    see ``_register_heif``); and Pillow's decompression-bomb *warning*
    (between MAX_IMAGE_PIXELS and twice that) becomes an error, so such an
    image is refused with a 413 instead of decoded.  Both are process-wide,
    hence done here, when images are first opened, and not at import.
    """
    global _policy_applied
    with _policy_lock:
        if not _policy_applied:
            Image.init()
            _register_heif()
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            _policy_applied = True


def _register_heif():
    """pillow-heif as the HEIF plugin: HEIC/HEIF photos from phones and cameras.

    Depth maps and auxiliary images are never used here, so libheif is told
    not to read them.  libheif applies the container's rotation and mirror
    itself and pillow-heif resets the EXIF orientation to 1 accordingly, so
    ``_orientation`` sees an upright image.  Frames are the container's
    top-level images, the primary one first shown.
    """
    from pillow_heif import register_heif_opener

    register_heif_opener(depth_images=False, aux_images=False)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime_type: str
    width: int   # as displayed, after EXIF orientation
    height: int
    frames: int


def probe(data, formats=DEFAULT_FORMATS, max_pixels=50_000_000, limits=DecodeLimits()):
    """Identify and validate ``data`` from its headers, never decoding pixels."""
    return probe_with_orientation(data, formats, max_pixels, limits)[0]


def probe_with_orientation(data, formats=DEFAULT_FORMATS, max_pixels=50_000_000,
                           limits=DecodeLimits()):
    """``(ImageInfo, EXIF orientation 1-8)`` of ``data``, from its headers."""
    allowed = allowed_formats(formats)
    check_structure(data, limits)
    with open_image(data, allowed, max_pixels) as im:
        return inspect(im, allowed, max_pixels)


def allowed_formats(formats):
    """The upper-cased plugin names of ``formats``; ValueError for one Pillow lacks."""
    apply_pillow_policy()  # registers every plugin, so Image.OPEN is complete
    allowed = tuple(dict.fromkeys(str(name).upper() for name in formats))
    unknown = [name for name in allowed if name not in Image.OPEN]
    if unknown:
        raise ValueError(f"unknown image formats: {', '.join(unknown)}")
    return allowed


def open_image(data, allowed, max_pixels):
    if not data:
        raise UnsupportedFormat(f"the upload is empty; allowed: {', '.join(allowed)}")
    try:
        # formats= keeps every other plugin (EPS -> Ghostscript, ...) out of reach.
        return Image.open(io.BytesIO(data), formats=allowed)
    except BOMB_ERRORS as exc:
        raise TooManyPixels(bomb_message(exc, max_pixels)) from exc
    except Image.UnidentifiedImageError as exc:
        raise _unidentified(data, allowed) from exc
    except DECODE_ERRORS as exc:
        raise InvalidImage(f"image header is corrupt: {reason(exc)}") from exc


def _unidentified(data, allowed):
    detected = _sniff(data)
    if detected in allowed:
        return InvalidImage(f"the data looks like {detected} but its header is corrupt")
    if detected:
        return UnsupportedFormat(
            f"{detected} images are not accepted; allowed: {', '.join(allowed)}"
        )
    return UnsupportedFormat(f"unrecognised image format; allowed: {', '.join(allowed)}")


def _sniff(data):
    """Name the format by magic bytes alone: no plugin parser runs on the data."""
    prefix = data[:16]  # what Image.open hands the accept() functions
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            # Plugins without accept() claim everything; a str result is a refusal.
            if accept is not None and accept(prefix) is True:
                return _canonical(name)
        except DECODE_ERRORS:
            continue
    return None


def _canonical(name):
    return "JPEG" if name == "MPO" else name


def inspect(im, allowed, max_pixels):
    """Return (ImageInfo, EXIF orientation) for an opened, undecoded image."""
    fmt = _canonical(im.format)
    if fmt not in allowed:  # a plugin may report a format other than its own name
        raise UnsupportedFormat(f"{fmt} images are not accepted; allowed: {', '.join(allowed)}")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has invalid dimensions {width}x{height}")
    _check_pixels(width * height, 1, max_pixels)
    try:
        frames = _frame_count(im)
    except BOMB_ERRORS as exc:
        raise TooManyPixels(bomb_message(exc, max_pixels)) from exc
    except DECODE_ERRORS as exc:
        raise InvalidImage(f"image header is corrupt: {reason(exc)}") from exc
    _check_pixels(width * height, frames, max_pixels)
    orientation = _orientation(im)
    if orientation >= 5:
        width, height = height, width
    mime = Image.MIME.get(fmt, f"image/{fmt.lower()}")
    return ImageInfo(fmt, mime, width, height, frames), orientation


def _frame_count(im):
    if im.format not in _COUNTED_FRAMES:
        return 1
    if im.format not in ("GIF", "TIFF"):
        return im.n_frames  # a header field
    # Pillow's n_frames would walk every block or IFD, however many there are;
    # these are the header-only steps it takes, stopped one past the limit.
    # GIF's public seek() decodes each frame it passes, hence the private
    # step n_frames itself uses (Pillow is pinned; a test covers the cap).
    step = (lambda frame: im._seek(frame, False)) if im.format == "GIF" else im.seek
    frames = 1
    try:
        while frames <= MAX_FRAMES:
            step(frames)
            frames += 1
    except EOFError:
        pass  # the last frame
    im.seek(0)
    return frames


def _check_pixels(pixels_per_frame, frames, max_pixels):
    if frames > MAX_FRAMES:
        raise too_many_frames()
    total = pixels_per_frame * frames
    if total > max_pixels:
        across = f" across {frames} frames" if frames > 1 else ""
        raise TooManyPixels(
            f"image has {total / 1e6:.1f} megapixels{across}; "
            f"the limit is {max_pixels / 1e6:.1f}"
        )


def _orientation(im):
    try:
        # The base implementation: PngImageFile.getexif() decodes the whole
        # image hunting for an eXIf chunk after the pixel data.
        value = Image.Image.getexif(im).get(_ORIENTATION_TAG, 1)
    except DECODE_ERRORS:
        return 1  # corrupt EXIF is common in camera files; the pixels are fine
    return value if isinstance(value, int) and value in TRANSPOSE else 1


def bomb_message(exc, max_pixels):
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if not match:
        return "image is too large to decode safely"
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    return f"image has {int(match[1]) / 1e6:.1f} megapixels; the limit is {limit / 1e6:.1f}"


def reason(exc):
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__

