"""Identify uploaded images and render preset renditions with Pillow.

``probe`` runs on the HTTP request path and only parses headers; ``render``
runs in ``eventlet.tpool`` threads.  Nothing here touches nameko or eventlet,
and no function mutates global state, so both are safe to call concurrently.

Decisions worth knowing:

* MPO (multi-picture JPEG from cameras and phones) is reported as format
  "JPEG", ``image/jpeg``: it is a valid JPEG whose primary picture every
  viewer shows.  Its ``frames`` is the number of pictures in the MP index.
* ``frames`` is the header-level count for PNG (APNG), WebP, AVIF and MPO.
  GIF and TIFF have no count field, so the block/IFD chain is walked without
  decoding pixels, and at most one frame past ``_MAX_FRAMES``; every other
  format counts as one frame.
* Limits: width * height * frames must not exceed ``max_pixels``, and there
  may be at most ``_MAX_FRAMES`` frames (both answer 413, TooManyPixels).
  Pillow's own bomb check still applies on top (whichever is lower wins).
* EXIF orientation is read from the header, in ``probe`` and ``render``
  alike, so both report the same dimensions (a PNG eXIf chunk stored after
  the pixel data is therefore ignored).
* Renditions show the first frame, but ``render`` also decodes every later
  frame once and rejects the file if one is corrupt or a bomb: the original
  is stored and served as uploaded, so all of it must be sound.
* 16-bit samples are scaled by 255/65535 (full-scale white stays white);
  float images are taken to be normalised to 0.0-1.0.
* An embedded ICC profile that lcms cannot use is ignored rather than
  failing the image.
"""
import io
import re
import struct
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from PIL import Image, ImageCms

from imagepipe.errors import InvalidImage, TooManyPixels, UnsupportedFormat
from imagepipe.ids import RESERVED_NAMES

DEFAULT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF")
OUTPUT_FORMATS = ("webp", "jpeg", "png", "avif")

# Register every plugin now, so worker threads never race on lazy plugin imports.
Image.init()
# Pillow only warns between MAX_IMAGE_PIXELS and twice that; we want a 413 there.
warnings.simplefilter("error", Image.DecompressionBombWarning)

_OUTPUT_MIME = {
    "webp": "image/webp",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "avif": "image/avif",
}
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# /images/<id>/original and /images/<id>/events are routes, not renditions
_RESERVED_NAMES = RESERVED_NAMES
_FITS = ("contain", "cover")
_MAX_SIDE = 10_000
_PRESET_KEYS = ("width", "height", "fit", "format", "quality")

# What Pillow's parsers and decoders raise on damaged or hostile input
# (UnidentifiedImageError is an OSError).  MemoryError is left to propagate:
# the render worker that hit its memory limit is replaced, and the image is
# rejected as too large (imagepipe.renderpool).
_DECODE_ERRORS = (
    OSError, ValueError, TypeError, SyntaxError, struct.error, EOFError,
    IndexError, KeyError, ArithmeticError,
    RuntimeError,  # libavif and libwebp bindings report bad streams this way
    ImageCms.PyCMSError,
)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_ICC_ERRORS = (ImageCms.PyCMSError, OSError, ValueError, TypeError)

# Plugins that know their frame count without decoding pixels.
_COUNTED_FRAMES = frozenset({"GIF", "PNG", "WEBP", "TIFF", "AVIF", "MPO"})
# Without a cap, a 25 MB GIF of 1x1 frames (a million of them, 1 MP in all)
# costs 5 s to count on the request path and minutes to validate in render.
_MAX_FRAMES = 1000

# Same table as ImageOps.exif_transpose.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112

# Thumbnails are built by integer box reduction down to 3x the target, then
# Lanczos: visually the same as pure Lanczos and several times faster.
_REDUCING_GAP = 3.0


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int
    fit: str = "contain"
    format: str = "webp"
    quality: int = 80

    def __post_init__(self):
        _check_name(self.name)
        for field, upper in (("width", _MAX_SIDE), ("height", _MAX_SIDE), ("quality", 100)):
            _check_int(self.name, field, getattr(self, field), upper)
        _check_choice(self.name, "fit", self.fit, _FITS)
        _check_choice(self.name, "format", self.format, OUTPUT_FORMATS)

    @classmethod
    def from_config(cls, name, mapping):
        if not isinstance(mapping, Mapping):
            raise ValueError(f"preset {name!r}: expected a mapping, got {type(mapping).__name__}")
        unknown = sorted(str(key) for key in mapping if key not in _PRESET_KEYS)
        if unknown:
            raise ValueError(
                f"preset {name!r}: unknown keys {', '.join(unknown)}; "
                f"expected {', '.join(_PRESET_KEYS)}"
            )
        missing = [key for key in ("width", "height") if key not in mapping]
        if missing:
            raise ValueError(f"preset {name!r}: missing {' and '.join(missing)}")
        options = dict(mapping)
        for key in ("fit", "format"):
            if isinstance(options.get(key), str):
                options[key] = options[key].strip().lower()
        return cls(name=name, **options)

    @property
    def mime_type(self):
        return _OUTPUT_MIME[self.format]


def _check_name(name):
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"preset name {name!r} is invalid: use 1-32 characters a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )
    if name in _RESERVED_NAMES:
        raise ValueError(f"preset name {name!r} is reserved")


def _check_int(preset, field, value, upper):
    # bool is an int subclass; "width: yes" in YAML must not become 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise ValueError(
            f"preset {preset!r}: {field} must be an integer from 1 to {upper}, got {value!r}"
        )


def _check_choice(preset, field, value, choices):
    if value not in choices:
        raise ValueError(
            f"preset {preset!r}: {field} must be one of {', '.join(choices)}, got {value!r}"
        )


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime_type: str
    width: int   # as displayed, after EXIF orientation
    height: int
    frames: int


@dataclass(frozen=True)
class Rendition:
    preset: str
    data: bytes
    format: str
    mime_type: str
    width: int
    height: int
    # time spent on this preset alone (resize, colour, encode); the shared
    # decode is not in it.  Measured in the render worker, reported as metrics.
    seconds: float = 0.0


def probe(data, formats=DEFAULT_FORMATS, max_pixels=50_000_000):
    """Identify and validate ``data`` from its headers, never decoding pixels."""
    allowed = _allowed(formats)
    with _open(data, allowed, max_pixels) as im:
        return _inspect(im, allowed, max_pixels)[0]


def render(data, presets, formats=DEFAULT_FORMATS, max_pixels=50_000_000):
    """Decode ``data`` once and return one Rendition per preset, in order."""
    presets = tuple(presets)
    if not presets:
        return []
    allowed = _allowed(formats)
    max_box = max(max(preset.width, preset.height) for preset in presets)
    info, image, to_srgb = _decode(data, allowed, max_pixels, max_box)
    if info.frames > 1:
        _check_later_frames(data, allowed, max_pixels, info.frames)
    full = _Pixels(image, (0, 0, info.width, info.height), to_srgb is None)
    plans = [_plan((info.width, info.height), preset) for preset in presets]
    results = [None] * len(presets)
    previous = full
    for index in sorted(range(len(presets)), key=lambda i: -_area(plans[i][0])):
        started = time.perf_counter()
        size, region = plans[index]
        base = previous if _covers(previous, size, region) else full
        pixels = _resize(base, size, region)
        if not base.srgb:
            # Colour-converting the few output pixels costs a fraction of
            # converting the decoded image (~90 ms for 3 MP).
            pixels = _to_srgb(pixels, to_srgb)
        previous = _Pixels(pixels, region, True)
        rendition = _encode(pixels, presets[index])
        results[index] = replace(rendition, seconds=time.perf_counter() - started)
    return results


# -- opening and validation -------------------------------------------------

def _allowed(formats):
    allowed = tuple(dict.fromkeys(str(name).upper() for name in formats))
    unknown = [name for name in allowed if name not in Image.OPEN]
    if unknown:
        raise ValueError(f"unknown image formats: {', '.join(unknown)}")
    return allowed


def _open(data, allowed, max_pixels):
    if not data:
        raise UnsupportedFormat(f"the upload is empty; allowed: {', '.join(allowed)}")
    try:
        # formats= keeps every other plugin (EPS -> Ghostscript, ...) out of reach.
        return Image.open(io.BytesIO(data), formats=allowed)
    except _BOMB_ERRORS as exc:
        raise TooManyPixels(_bomb_message(exc, max_pixels)) from exc
    except Image.UnidentifiedImageError as exc:
        raise _unidentified(data, allowed) from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"image header is corrupt: {_reason(exc)}") from exc


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
        except _DECODE_ERRORS:
            continue
    return None


def _canonical(name):
    return "JPEG" if name == "MPO" else name


def _inspect(im, allowed, max_pixels):
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
    except _BOMB_ERRORS as exc:
        raise TooManyPixels(_bomb_message(exc, max_pixels)) from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"image header is corrupt: {_reason(exc)}") from exc
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
        while frames <= _MAX_FRAMES:
            step(frames)
            frames += 1
    except EOFError:
        pass  # the last frame
    im.seek(0)
    return frames


def _check_pixels(pixels_per_frame, frames, max_pixels):
    if frames > _MAX_FRAMES:
        raise TooManyPixels(
            f"image has more than {_MAX_FRAMES} frames; the limit is {_MAX_FRAMES}"
        )
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
    except _DECODE_ERRORS:
        return 1  # corrupt EXIF is common in camera files; the pixels are fine
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _bomb_message(exc, max_pixels):
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if not match:
        return "image is too large to decode safely"
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    return f"image has {int(match[1]) / 1e6:.1f} megapixels; the limit is {limit / 1e6:.1f}"


def _reason(exc):
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__


# -- decoding ---------------------------------------------------------------

def _decode(data, allowed, max_pixels, max_box):
    """Return (ImageInfo, upright pixels without metadata, transform to sRGB or None)."""
    with _open(data, allowed, max_pixels) as im:
        info, orientation = _inspect(im, allowed, max_pixels)
        try:
            # JPEG then decodes at 1/2, 1/4 or 1/8 scale straight from the DCT.
            # A square request covers every preset whichever way EXIF rotates.
            im.draft(im.mode, (max_box, max_box))
            im.load()
            method = _TRANSPOSE.get(orientation)
            upright = im if method is None else im.transpose(method)
            return (info, *_normalise(upright, im.info.get("icc_profile")))
        except _BOMB_ERRORS as exc:
            raise TooManyPixels(_bomb_message(exc, max_pixels)) from exc
        except _DECODE_ERRORS as exc:
            raise InvalidImage(f"image data is corrupt or truncated: {_reason(exc)}") from exc


def _check_later_frames(data, allowed, max_pixels, frames):
    # A fresh image: seeking back to frame 0 after a decode is unreliable
    # (APNG), and JPEG's draft scale would carry over to MPO's later pictures.
    # The pixel limit already counted these frames, which bounds the cost.
    with _open(data, allowed, max_pixels) as im:
        frame = 1
        try:
            for frame in range(1, frames):
                im.seek(frame)
                im.load()
        except _BOMB_ERRORS as exc:
            raise TooManyPixels(_bomb_message(exc, max_pixels)) from exc
        except _DECODE_ERRORS as exc:
            raise InvalidImage(
                f"frame {frame + 1} of {frames} is corrupt or truncated: {_reason(exc)}"
            ) from exc


def _normalise(im, icc):
    """Return (pixels in L, RGB, RGBA or CMYK, ICC transform to sRGB or None)."""
    transform = None
    if im.mode.startswith("I"):
        out = _high_depth_to_l(im, 1 / 257)  # 16-bit range, also what Pillow widens to I
    elif im.mode == "F":
        out = _high_depth_to_l(im, 255)
    elif im.mode == "LAB":
        out = _lab_to_rgb(im)
    else:
        # Adobe's inverted CMYK is already un-inverted by the JPEG decoder.
        out = im if im.mode == "CMYK" else _plain_modes(im)
        if icc and out.mode in ("RGB", "RGBA", "CMYK"):
            transform = _icc_transform(icc, out.mode)
        if out.mode == "CMYK" and transform is None:
            out = out.convert("RGB")
    out.info = {}  # plugins copy info into saved files (AVIF: ICC); output is plain sRGB
    return out, transform


def _plain_modes(im):
    if im.mode in ("RGB", "RGBA", "L") and "transparency" not in im.info:
        return im
    if im.mode == "1":
        return im.convert("L")
    return im.convert("RGBA" if im.has_transparency_data else "RGB")


def _high_depth_to_l(im, scale):
    # Scale to 0..255 ourselves: a bare convert("L") clips, so 16-bit data turns white.
    wide = im if im.mode in ("I", "F") else im.convert("I")
    return wide.point(lambda value: value * scale + 0.5).convert("L")


def _lab_to_rgb(im):
    transform = ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )
    return ImageCms.applyTransform(im, transform)


def _icc_transform(icc, mode):
    """A transform from the embedded profile to sRGB, or None if lcms rejects it."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        # A fresh sRGB profile per call: lcms profile objects are not shared across threads.
        return ImageCms.buildTransform(
            source, ImageCms.createProfile("sRGB"), mode, "RGBA" if mode == "RGBA" else "RGB"
        )
    except _ICC_ERRORS:
        return None  # broken or mismatched profiles are common; the pixels are still usable


def _to_srgb(pixels, transform):
    try:
        out = ImageCms.applyTransform(pixels, transform)
    except _ICC_ERRORS:
        out = pixels.convert(transform.output_mode)
    out.info = {}  # applyTransform tags its output with the sRGB profile
    return out


# -- geometry -----------------------------------------------------------------

class _Pixels(NamedTuple):
    image: Image.Image
    region: tuple  # the part of the upright original the image shows
    srgb: bool     # colour already converted


def _plan(size, preset):
    """Output size and the region of an image of ``size`` it shows; never upscales."""
    width, height = size
    if preset.fit == "contain":
        scale = min(1.0, preset.width / width, preset.height / height)
        return _dims(width * scale, height * scale), (0, 0, width, height)
    scale = min(1.0, width / preset.width, height / preset.height)
    aspect = preset.width / preset.height
    crop_w, crop_h = min(width, height * aspect), min(height, width / aspect)
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    region = (left, top, left + crop_w, top + crop_h)
    return _dims(preset.width * scale, preset.height * scale), region


def _dims(width, height):
    return max(1, round(width)), max(1, round(height))


def _area(size):
    return size[0] * size[1]


def _covers(source, size, region):
    """Can ``source`` produce ``region`` of the original at ``size``?"""
    pixels, shown, _ = source
    inside = (shown[0] <= region[0] and shown[1] <= region[1]
              and region[2] <= shown[2] and region[3] <= shown[3])
    scale_x = pixels.width / (shown[2] - shown[0])
    scale_y = pixels.height / (shown[3] - shown[1])
    return (inside and (region[2] - region[0]) * scale_x >= size[0]
            and (region[3] - region[1]) * scale_y >= size[1])


def _resize(source, size, region):
    pixels, shown, _ = source
    scale_x = pixels.width / (shown[2] - shown[0])
    scale_y = pixels.height / (shown[3] - shown[1])
    box = ((region[0] - shown[0]) * scale_x, (region[1] - shown[1]) * scale_y,
           (region[2] - shown[0]) * scale_x, (region[3] - shown[1]) * scale_y)
    if size == pixels.size and box == (0, 0) + pixels.size:
        return pixels
    return pixels.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)


# -- encoding -------------------------------------------------------------------

def _encode(im, preset):
    im = _output_mode(im, preset.format)
    buffer = io.BytesIO()
    im.save(buffer, preset.format.upper(), **_save_options(preset))
    return Rendition(preset.name, buffer.getvalue(), preset.format, preset.mime_type,
                     im.width, im.height)


def _output_mode(im, fmt):
    if fmt == "jpeg" and im.mode == "RGBA":
        # JPEG has no alpha: flatten onto white, as a browser on a white page would.
        background = Image.new("RGB", im.size, "white")
        background.paste(im, mask=im.getchannel("A"))
        return background
    if fmt in ("webp", "avif") and im.mode == "L":
        return im.convert("RGB")
    return im


def _save_options(preset):
    if preset.format == "webp":
        return {"quality": preset.quality, "method": 4}
    if preset.format == "jpeg":
        return {"quality": preset.quality, "optimize": False, "progressive": False}
    if preset.format == "avif":
        # The default speed 6 takes about a second per 1.7 MP rendition.
        return {"quality": preset.quality, "speed": 8}
    return {"optimize": False}
