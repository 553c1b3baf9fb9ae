"""Every frame of a multi-frame image: checked always, kept for ``animated`` presets.

``animate`` walks the frames of an image that ``render`` has already
decoded the first frame of.  Each later frame is decoded once, so a corrupt
or exploding frame fails the image even when no preset animates (the
original is served as uploaded, so all of it must be sound).  For presets
with ``animated: true`` it also keeps each frame resized to the preset's
size and region, with the frame's duration and the loop count, so the
renditions animate like the original.

Only animations are animated: GIF, WebP, APNG and AVIF sequences.  The
pictures of an MPO, a multi-page TIFF or a multi-image HEIF are not frames
of a film; their renditions show the first (primary) one.

The caps (``Limits``, config.yaml ``ANIMATION_*``) bound the work: more
frames, a longer running time or more output pixels (summed over frames and
animated presets) than allowed, and the renditions show the first frame, as
for a still image.
"""
import io
from dataclasses import dataclass, fields
from typing import NamedTuple

from PIL import Image

from imagepipe.errors import InvalidImage, TooManyPixels
from imagepipe.rendering.presets import ANIMATED_FORMATS
from imagepipe.rendering.probe import (
    BOMB_ERRORS, DECODE_ERRORS, TRANSPOSE, bomb_message, inspect, open_image, reason)

ANIMATED_SOURCES = frozenset({"GIF", "WEBP", "PNG", "AVIF"})
_REDUCING_GAP = 3.0


@dataclass(frozen=True)
class Limits:
    max_frames: int = 300
    max_seconds: float = 60.0
    # output pixels, summed over every frame of every animated rendition
    max_pixels: int = 25_000_000

    @classmethod
    def from_dict(cls, values):
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in (values or {}).items() if key in names})


class Frames(NamedTuple):
    images: list      # one resized image per frame
    durations: list   # milliseconds per frame
    loop: int         # 0: forever; n: play n times


def animate(data, allowed, max_pixels, info, plans, limits):
    """Check frames 1.. of ``data``; return ``{preset index: Frames}`` for the
    animated presets in ``plans`` (index -> (size, region)) that fit ``limits``."""
    if info.format not in ANIMATED_SOURCES or not _within_frame_limits(info, plans, limits):
        plans = {}
    kept = {index: [] for index in plans}
    durations = []
    loop = 0
    with open_image(data, allowed, max_pixels) as im:
        orientation = inspect(im, allowed, max_pixels)[1] if plans else 1
        frame = 0
        try:
            for frame in range(0 if plans else 1, info.frames):
                im.seek(frame)
                im.load()
                if not plans:
                    continue
                durations.append(max(0, int(im.info.get("duration") or 0)))
                if sum(durations) > limits.max_seconds * 1000:
                    plans, kept = {}, {}  # too long: first frame only, but go on checking
                    continue
                upright = _upright(im, orientation)
                for index, (size, region) in plans.items():
                    kept[index].append(upright.resize(
                        size, Image.Resampling.LANCZOS, box=region, reducing_gap=_REDUCING_GAP))
            loop = _loop_count(im)
        except BOMB_ERRORS as exc:
            raise TooManyPixels(bomb_message(exc, max_pixels)) from exc
        except DECODE_ERRORS as exc:
            raise InvalidImage(
                f"frame {frame + 1} of {info.frames} is corrupt or truncated: {reason(exc)}"
            ) from exc
    return {index: Frames(images, durations, loop) for index, images in kept.items()}


def _within_frame_limits(info, plans, limits):
    output_pixels = sum(size[0] * size[1] for size, _ in plans.values()) * info.frames
    return info.frames <= limits.max_frames and output_pixels <= limits.max_pixels


def _upright(im, orientation):
    # Composited frames come as P, L, RGB or RGBA; renditions are RGB(A).
    frame = im.convert("RGBA" if im.has_transparency_data or im.mode in ("P", "PA", "LA") else "RGB")
    method = TRANSPOSE.get(orientation)
    return frame if method is None else frame.transpose(method)


def _loop_count(im):
    # A GIF without the NETSCAPE extension plays once; other formats say.
    if im.format == "GIF":
        return int(im.info["loop"]) if "loop" in im.info else 1
    return int(im.info.get("loop") or 0)


def encode(frames, fmt, save_options):
    """The bytes of ``frames`` as an animation in ``fmt`` (webp, png as APNG, or avif)."""
    if fmt not in ANIMATED_FORMATS:
        raise ValueError(f"{fmt} cannot animate")
    first, *rest = frames.images
    buffer = io.BytesIO()
    first.save(buffer, fmt.upper(), save_all=True, append_images=rest,
               duration=frames.durations, loop=frames.loop, **save_options)
    return buffer.getvalue()
