"""Image sniffing and rendering with Pillow.

``probe`` runs on the upload path: it reads the header only (format,
dimensions, frames) and enforces the format allowlist and the pixel limit.
``render`` runs in an imaging worker thread: it decodes once, at the smallest
JPEG scale that still covers the largest preset, and derives every rendition
from the largest down.

Only the decoders in ``formats`` are ever used (``Image.open(formats=...)``),
whatever the file name or Content-Type claimed: an EPS file named ``.jpg``
never reaches Ghostscript.  Module-level set-up only; nothing here mutates
global state per call, because ``render`` runs in several threads at once.
"""
import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageFile, ImageOps

from imagepipe.errors import InvalidImage, TooManyPixels, UnsupportedFormat
from imagepipe.ids import RESERVED_NAMES, is_valid_preset_name

# A decompression-bomb warning is a rejection, not a log line.
warnings.simplefilter("error", Image.DecompressionBombWarning)
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF")
OUTPUT_FORMATS = ("webp", "jpeg", "png", "avif")
FIT_MODES = ("contain", "cover")
MAX_BOX = 10000

_MIME_TYPES = {
    "JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
    "WEBP": "image/webp", "TIFF": "image/tiff", "BMP": "image/bmp",
    "AVIF": "image/avif",
}
_OUTPUT_MIME_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg",
                      "png": "image/png", "avif": "image/avif"}

# Corrupt files make Pillow raise far more than OSError.
DECODE_ERRORS = (OSError, ValueError, TypeError, SyntaxError, struct.error,
                 EOFError, IndexError, KeyError, ZeroDivisionError,
                 AttributeError, RuntimeError, MemoryError, OverflowError)

# Magic numbers, to name what a rejected file is (and to tell a corrupt file
# of an allowed format from a file of another format).
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"), (b"BM", "BMP"), (b"8BPS", "PSD"), (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"), (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"\xd0\xcf\x11\xe0", "OLE document"), (b"qoif", "QOI"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"), (b"DDS ", "DDS"),
    (b"BLP", "BLP"), (b"\x01\xda", "SGI"), (b"PK\x03\x04", "ZIP archive"),
)


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int
    fit: str = "contain"
    format: str = "webp"
    quality: int = 80

    @classmethod
    def from_config(cls, name, mapping):
        if not is_valid_preset_name(name):
            raise ValueError(
                "preset name {!r} must match [a-z0-9][a-z0-9_-]{{0,31}} and not be one of {}"
                .format(name, ", ".join(sorted(RESERVED_NAMES))))
        mapping = dict(mapping or {})
        preset = cls(
            name=name,
            width=_int_setting(name, "width", mapping.get("width"), 1, MAX_BOX),
            height=_int_setting(name, "height", mapping.get("height"), 1, MAX_BOX),
            fit=str(mapping.get("fit", "contain")).lower(),
            format=str(mapping.get("format", "webp")).lower(),
            quality=_int_setting(name, "quality", mapping.get("quality", 80), 1, 100),
        )
        if preset.fit not in FIT_MODES:
            raise ValueError("preset {}: fit must be one of {}".format(name, FIT_MODES))
        if preset.format not in OUTPUT_FORMATS:
            raise ValueError("preset {}: format must be one of {}".format(name, OUTPUT_FORMATS))
        return preset

    @property
    def mime_type(self):
        return _OUTPUT_MIME_TYPES[self.format]


def _int_setting(preset, key, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError("preset {}: {} must be a whole number from {} to {}, not {!r}"
                         .format(preset, key, low, high, value))
    return value


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime_type: str
    width: int   # as displayed: after EXIF orientation
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


# -- sniffing ---------------------------------------------------------------

def probe(data, formats=DEFAULT_FORMATS, max_pixels=50_000_000):
    """Header-only facts about an upload; raises if it must be rejected."""
    image = _open(data, formats)
    with image:
        return _inspect(image, formats, max_pixels)


def _open(data, formats):
    if not data:
        raise UnsupportedFormat("the file is empty")
    try:
        return Image.open(io.BytesIO(data), formats=list(formats))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels("the image declares too many pixels ({})".format(exc)) from None
    except Image.UnidentifiedImageError:
        raise _unidentified(data, formats) from None
    except DECODE_ERRORS as exc:
        raise InvalidImage("the image header is corrupt: {}".format(_short(exc))) from None


def _unidentified(data, formats):
    detected = sniff_signature(data)
    if detected in formats:
        return InvalidImage("the file looks like {} but its header is corrupt".format(detected))
    return UnsupportedFormat("{} is not an accepted image format; accepted: {}".format(
        detected or "the content", ", ".join(formats)))


def sniff_signature(data):
    """The format a file's magic number names, or None (no Pillow involved)."""
    head = bytes(data[:16])
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "AVIF" if brand in (b"avif", b"avis") else "HEIF/ISO media"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def _inspect(image, formats, max_pixels):
    fmt = "JPEG" if image.format == "MPO" else image.format
    if fmt not in formats:  # defence in depth; Image.open(formats=) already enforces it
        raise UnsupportedFormat("{} images are not accepted".format(fmt))
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage("the image has no pixels ({}x{})".format(width, height))
    try:
        frames = max(1, int(getattr(image, "n_frames", 1) or 1))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels("an animation frame is too large ({})".format(exc)) from None
    except DECODE_ERRORS as exc:
        raise InvalidImage("the animation frames are corrupt: {}".format(_short(exc))) from None
    pixels = width * height * frames
    if pixels > max_pixels:
        raise TooManyPixels("the image has {:.1f} megapixels{}; the limit is {:.1f}".format(
            pixels / 1e6, " over {} frames".format(frames) if frames > 1 else "",
            max_pixels / 1e6))
    if _orientation(image) in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(fmt, _MIME_TYPES.get(fmt, Image.MIME.get(fmt, "application/octet-stream")),
                     width, height, frames)


def _orientation(image):
    """EXIF orientation from the header alone.

    ``getexif()`` would decode a PNG whose eXIf chunk follows the pixel data,
    so only EXIF already read with the header (or TIFF's own tags) counts
    here; ``render`` applies the full EXIF after decoding anyway.
    """
    try:
        if image.format == "TIFF":
            return image.getexif().get(0x0112, 1)
        raw = image.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(0x0112, 1)
    except DECODE_ERRORS:
        return 1  # unreadable EXIF: show the pixels as stored


# -- rendering --------------------------------------------------------------

def render(data, presets, formats=DEFAULT_FORMATS, max_pixels=50_000_000):
    """Decode once and return one Rendition per preset, in the given order."""
    presets = list(presets)
    if not presets:
        return []
    image = _open(data, formats)
    with image:
        info = _inspect(image, formats, max_pixels)
        if info.frames > 1:
            _check_later_frames(image)
    with _open(data, formats) as image:  # fresh: seeking back is unreliable (APNG)
        base = _decode(image, max(max(p.width, p.height) for p in presets))
    renditions = {}
    source = base
    for preset in sorted(presets, key=lambda p: p.width * p.height, reverse=True):
        resized = _resize(preset, base, source)
        renditions[preset.name] = _encode(preset, resized)
        if preset.fit == "contain":
            source = resized  # same aspect as base: smaller presets start here
    return [renditions[preset.name] for preset in presets]


def _decode(image, largest_box):
    try:
        if image.format in ("JPEG", "MPO"):
            # DCT scaling: decode at 1/2, 1/4 or 1/8 size when that still
            # covers the largest box in both directions (rotation included).
            image.draft(image.mode if image.mode in ("L", "CMYK") else "RGB",
                        (largest_box, largest_box))
        image.load()
        icc_profile = image.info.get("icc_profile")
        _exif_transpose(image)
        return _normalize(image, icc_profile)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels("the image is a decompression bomb ({})".format(exc)) from None
    except DECODE_ERRORS as exc:
        raise InvalidImage("image data is corrupt or truncated: {}".format(_short(exc))) from None


def _check_later_frames(image):
    # Renditions use the first frame, but a file whose later frames are
    # corrupt or oversized is still a bad file; the pixel limit (frames
    # counted) bounds the cost of decoding them all.
    try:
        for frame in range(1, image.n_frames):
            image.seek(frame)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels("an animation frame is a decompression bomb ({})".format(exc)) from None
    except DECODE_ERRORS as exc:
        raise InvalidImage("animation frame {} is corrupt: {}".format(frame, _short(exc))) from None


def _exif_transpose(image):
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except DECODE_ERRORS:
        pass  # unreadable EXIF: keep the pixels as stored


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _normalize(image, icc_profile):
    """Convert any decoded mode to L, RGB or RGBA in sRGB, without metadata."""
    mode = image.mode
    if mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode == "LA":
        image = image.convert("RGBA")
    elif mode.startswith("I") or mode == "F":
        image = _to_8bit(image)
    elif mode == "LAB":
        image = ImageCms.applyTransform(image, _LAB_TO_SRGB)
        icc_profile = None
    elif mode not in ("L", "RGB", "RGBA", "CMYK"):
        image = image.convert("RGBA" if "A" in mode else "RGB")
    if icc_profile:
        image = _to_srgb(image, icc_profile)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    image.info = {}
    return image


_LAB_TO_SRGB = ImageCms.buildTransform(
    ImageCms.createProfile("LAB"), _SRGB, "LAB", "RGB")


def _to_8bit(image):
    # Keep the values' meaning: 16-bit 65535 is 8-bit 255.  A plain
    # convert("L") would clip everything above 255 to white.
    if image.mode == "F":
        return image.convert("L")
    return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")


def _to_srgb(image, icc_profile):
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if image.mode == "RGBA":
            rgb = ImageCms.profileToProfile(image.convert("RGB"), source, _SRGB, outputMode="RGB")
            rgb.putalpha(image.getchannel("A"))
            return rgb
        output_mode = "L" if image.mode == "L" and _is_gray(source) else "RGB"
        if output_mode == "L":
            return image  # a gray profile: sRGB gray is close enough, keep it small
        return ImageCms.profileToProfile(image, source, _SRGB, outputMode=output_mode)
    except (ImageCms.PyCMSError, *DECODE_ERRORS):
        return image  # a broken or mismatched profile: keep the pixels as they are


def _is_gray(profile):
    try:
        return profile.profile.xcolor_space.strip() == "GRAY"
    except AttributeError:
        return False


def _resize(preset, base, source):
    target, crop = _plan(preset, base.size)
    left, top, right, bottom = crop
    width, height = source.size
    if (right - left) * width < target[0] or (bottom - top) * height < target[1]:
        source, (width, height) = base, base.size  # the smaller rendition is too small
    box = (left * width, top * height, right * width, bottom * height)
    if target == source.size and box == (0, 0, width, height):
        return source
    return source.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _plan(preset, size):
    """Target size and crop box (as fractions of the image) for a preset."""
    width, height = size
    if preset.fit == "contain":
        scale = min(1.0, preset.width / width, preset.height / height)
        return (max(1, round(width * scale)), max(1, round(height * scale))), (0, 0, 1, 1)
    # cover: crop the centre to the box's aspect ratio, then shrink (never enlarge)
    box_aspect = preset.width / preset.height
    if width / height > box_aspect:
        crop_w, crop_h = height * box_aspect, height
    else:
        crop_w, crop_h = width, width / box_aspect
    scale = min(1.0, preset.width / crop_w)
    target = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
    left = (width - crop_w) / 2 / width
    top = (height - crop_h) / 2 / height
    return target, (left, top, 1 - left, 1 - top)


def _encode(preset, image):
    image = _mode_for(preset.format, image)
    out = io.BytesIO()
    if preset.format == "webp":
        image.save(out, "WEBP", quality=preset.quality, method=4)
    elif preset.format == "jpeg":
        image.save(out, "JPEG", quality=preset.quality)
    elif preset.format == "png":
        image.save(out, "PNG")
    else:
        image.save(out, "AVIF", quality=preset.quality, speed=8)
    return Rendition(preset.name, out.getvalue(), preset.format, preset.mime_type,
                     image.width, image.height)


def _mode_for(output_format, image):
    if output_format == "jpeg" and image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    if output_format in ("webp", "avif") and image.mode == "L":
        return image.convert("RGB")
    return image


def _short(exc):
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
