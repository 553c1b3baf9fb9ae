"""Render preset renditions with Pillow: decode once, resize, convert, encode.

Runs in the render worker processes (``imagepipe.rendering.worker``).
Nothing here touches nameko or eventlet, and no function mutates global
state, so renders may run concurrently.

Decisions worth knowing:

* Renditions show the first frame -- unless the preset is ``animated``
  (``imagepipe.rendering.animation``) -- but ``render`` also decodes every
  later frame once and rejects the file if one is corrupt or a bomb: the
  original is stored and served as uploaded, so all of it must be sound.
* A preset with several formats is resized once and encoded once per format.
* ``fit: cover`` crops around a focal point (``imagepipe.rendering.focus``):
  the upload's, or one found from the pixels when none was given.
* Each rendition carries a placeholder (ThumbHash) and dominant colour of what it
  shows (``imagepipe.rendering.placeholder``), computed once per distinct
  region from the smallest rendition of it.
* 16-bit samples are scaled by 255/65535 (full-scale white stays white);
  float images are taken to be normalised to 0.0-1.0.
* An embedded ICC profile that lcms cannot use is ignored rather than
  failing the image.
"""
import io
import time
from dataclasses import dataclass, replace
from typing import NamedTuple

from PIL import Image, ImageCms

from imagepipe.errors import InvalidImage, TooManyPixels
from imagepipe.rendering import animation
from imagepipe.rendering.focus import CENTRE, auto_focus, crop_region
from imagepipe.rendering.placeholder import placeholder_for
from imagepipe.rendering.presets import ANIMATED_FORMATS, DEFAULT_FORMATS, OUTPUT_MIME
from imagepipe.rendering.probe import (
    BOMB_ERRORS, DECODE_ERRORS, TRANSPOSE, allowed_formats, bomb_message, inspect, open_image,
    reason)

_ICC_ERRORS = (ImageCms.PyCMSError, OSError, ValueError, TypeError)

# Thumbnails are built by integer box reduction down to 3x the target, then
# Lanczos: visually the same as pure Lanczos and several times faster.
_REDUCING_GAP = 3.0


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
    # base64 ThumbHash and "#rrggbb" dominant colour of what the rendition shows
    placeholder: str = ""
    color: str = ""
    # the focal point (fractions of the upright original) a cover crop is centred on
    focus: tuple = None
    frames: int = 1  # more than 1: an animation (animated presets only)


def probe(data, formats=DEFAULT_FORMATS, max_pixels=50_000_000):
    """Identify and validate ``data`` from its headers, never decoding pixels."""
    allowed = allowed_formats(formats)
    with open_image(data, allowed, max_pixels) as im:
        return inspect(im, allowed, max_pixels)[0]


def render(data, presets, formats=DEFAULT_FORMATS, max_pixels=50_000_000, focus=None,
           animation_limits=None):
    """Decode ``data`` once and return the Renditions of every preset, in order:
    one per format of each preset.

    ``focus``: the upload's focal point for cover crops (None: found from the
    pixels).  ``animation_limits``: ``animation.Limits`` fields as a dict, for
    ``animated`` presets (None: the defaults).
    """
    presets = tuple(presets)
    if not presets:
        return []
    allowed = allowed_formats(formats)
    max_box = max(max(preset.width, preset.height) for preset in presets)
    info, image, to_srgb = _decode(data, allowed, max_pixels, max_box)
    size = (info.width, info.height)
    if any(preset.fit == "cover" for preset in presets) and focus is None:
        focus = auto_focus(image)
    plans = [_plan(size, preset, tuple(focus or CENTRE)) for preset in presets]
    animations = {}
    if info.frames > 1:
        animations = animation.animate(
            data, allowed, max_pixels, info,
            {index: plans[index] for index, preset in enumerate(presets) if preset.animated},
            animation.Limits.from_dict(animation_limits))
    full = _Pixels(image, (0, 0, info.width, info.height), to_srgb is None)
    results = [None] * len(presets)
    smallest_of_region = {}  # region -> its smallest pixels (presets go largest first)
    previous = full
    for index in sorted(range(len(presets)), key=lambda i: -_area(plans[i][0])):
        started = time.perf_counter()
        out_size, region = plans[index]
        base = previous if _covers(previous, out_size, region) else full
        pixels = _resize(base, out_size, region)
        if not base.srgb:
            # Colour-converting the few output pixels costs a fraction of
            # converting the decoded image (~90 ms for 3 MP).
            pixels = _to_srgb(pixels, to_srgb)
        previous = _Pixels(pixels, region, True)
        smallest_of_region[region] = pixels
        preset = presets[index]
        crop_focus = tuple(focus) if preset.fit == "cover" else None
        renditions = _encode_formats(pixels, preset, animations.get(index), to_srgb)
        results[index] = [replace(rendition, focus=crop_focus, seconds=0.0 if number else
                                  time.perf_counter() - started)
                          for number, rendition in enumerate(renditions)]
    # Placeholders are shared by renditions of one region: for the default
    # presets (both "contain") one is computed per image.
    placeholders = {region: placeholder_for(pixels) for region, pixels in smallest_of_region.items()}
    return [replace(rendition, **placeholders[plans[index][1]])
            for index, renditions in enumerate(results) for rendition in renditions]


def _encode_formats(pixels, preset, frames, to_srgb):
    """The preset's renditions of ``pixels``: one per format, animated where it can be."""
    if frames is None:
        return [_encode(pixels, preset, fmt) for fmt in preset.formats]
    if to_srgb is not None:
        frames = frames._replace(images=[_to_srgb(frame, to_srgb) for frame in frames.images])
    formats = preset.formats
    if not any(fmt in ANIMATED_FORMATS for fmt in formats):
        formats = ("webp",)  # e.g. a JPEG preset: animated WebP instead
    renditions = []
    for fmt in formats:
        if fmt not in ANIMATED_FORMATS:  # a still fallback beside animated formats
            renditions.append(_encode(pixels, preset, fmt))
            continue
        data = animation.encode(frames, fmt, _save_options(preset, fmt))
        first = frames.images[0]
        renditions.append(Rendition(preset.name, data, fmt, OUTPUT_MIME[fmt], first.width,
                                    first.height, frames=len(frames.images)))
    return renditions


# -- decoding ---------------------------------------------------------------

def _decode(data, allowed, max_pixels, max_box):
    """Return (ImageInfo, upright pixels without metadata, transform to sRGB or None)."""
    with open_image(data, allowed, max_pixels) as im:
        info, orientation = inspect(im, allowed, max_pixels)
        try:
            # JPEG then decodes at 1/2, 1/4 or 1/8 scale straight from the DCT.
            # A square request covers every preset whichever way EXIF rotates.
            im.draft(im.mode, (max_box, max_box))
            im.load()
            method = TRANSPOSE.get(orientation)
            upright = im if method is None else im.transpose(method)
            return (info, *_normalise(upright, im.info.get("icc_profile")))
        except BOMB_ERRORS as exc:
            raise TooManyPixels(bomb_message(exc, max_pixels)) from exc
        except DECODE_ERRORS as exc:
            raise InvalidImage(f"image data is corrupt or truncated: {reason(exc)}") from exc


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


def _plan(size, preset, focus=CENTRE):
    """Output size and the region of an image of ``size`` it shows; never upscales."""
    width, height = size
    if preset.fit == "contain":
        scale = min(1.0, preset.width / width, preset.height / height)
        return _dims(width * scale, height * scale), (0, 0, width, height)
    scale = min(1.0, width / preset.width, height / preset.height)
    region = crop_region(size, preset.width / preset.height, focus)
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

def _encode(im, preset, fmt):
    im = _output_mode(im, fmt)
    buffer = io.BytesIO()
    im.save(buffer, fmt.upper(), **_save_options(preset, fmt))
    return Rendition(preset.name, buffer.getvalue(), fmt, OUTPUT_MIME[fmt], im.width, im.height)


def _output_mode(im, fmt):
    if fmt == "jpeg" and im.mode == "RGBA":
        # JPEG has no alpha: flatten onto white, as a browser on a white page would.
        background = Image.new("RGB", im.size, "white")
        background.paste(im, mask=im.getchannel("A"))
        return background
    if fmt in ("webp", "avif") and im.mode == "L":
        return im.convert("RGB")
    return im


def _save_options(preset, fmt):
    if fmt == "webp":
        return {"quality": preset.quality, "method": 4}
    if fmt == "jpeg":
        return {"quality": preset.quality, "optimize": False, "progressive": False}
    if fmt == "avif":
        # The default speed 6 takes about a second per 1.7 MP rendition.
        return {"quality": preset.quality, "speed": 8}
    return {"optimize": False}
