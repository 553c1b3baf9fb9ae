"""Presets: the renditions every image gets, and the formats that go in and out.

Plain data and validation, no Pillow: ``imagepipe.settings`` reads presets
from config.yaml through this module, so reading configuration never loads
an image library.
"""
from collections.abc import Mapping
from dataclasses import dataclass

from imagepipe.ids import RESERVED_NAMES, is_valid_preset_name

# Accepted uploads (Pillow plugin names; HEIF is pillow-heif's, registered by
# imagepipe.rendering.probe); ALLOWED_FORMATS narrows or widens it.
DEFAULT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF", "HEIF")
OUTPUT_FORMATS = ("webp", "jpeg", "png", "avif")
# Output formats that can carry an animation (PNG as APNG).
ANIMATED_FORMATS = ("webp", "png", "avif")
OUTPUT_MIME = {
    "webp": "image/webp",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "avif": "image/avif",
}
DEFAULT_PRESETS = {
    "thumb": {"width": 256, "height": 256, "fit": "contain", "format": "webp", "quality": 80},
    "medium": {"width": 1024, "height": 1024, "fit": "contain", "format": "webp", "quality": 82},
}
FITS = ("contain", "cover")
_MAX_SIDE = 10_000
_PRESET_KEYS = ("width", "height", "fit", "format", "quality", "animated")


@dataclass(frozen=True)
class Preset:
    """One rendition every image gets.

    ``formats``: its encodings, best first (``format: [avif, webp, jpeg]``
    in config.yaml; a single string is a list of one).  ``GET
    /images/<id>/<preset>`` answers the first one the client accepts and
    the last one when it accepts none (``imagepipe.web.negotiation``).
    ``animated``: animated sources keep their animation (within the
    ANIMATION_* caps) in the formats that can animate.
    """

    name: str
    width: int
    height: int
    fit: str = "contain"
    format: str = "webp"
    quality: int = 80
    # the formats after the first, in order of preference
    more_formats: tuple = ()
    animated: bool = False

    def __post_init__(self):
        _check_name(self.name)
        for field, upper in (("width", _MAX_SIDE), ("height", _MAX_SIDE), ("quality", 100)):
            _check_int(self.name, field, getattr(self, field), upper)
        _check_choice(self.name, "fit", self.fit, FITS)
        if not isinstance(self.more_formats, tuple):
            raise ValueError(f"preset {self.name!r}: more_formats must be a tuple")
        for fmt in self.formats:
            _check_choice(self.name, "format", fmt, OUTPUT_FORMATS)
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"preset {self.name!r}: format lists a format twice")
        if not isinstance(self.animated, bool):
            raise ValueError(f"preset {self.name!r}: animated must be true or false")

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
        if isinstance(options.get("fit"), str):
            options["fit"] = options["fit"].strip().lower()
        if "format" in options:
            first, *more = _format_list(name, options.pop("format"))
            options.update(format=first, more_formats=tuple(more))
        return cls(name=name, **options)

    @property
    def formats(self):
        """Every format of the preset, the preferred first."""
        return (self.format, *self.more_formats)

    @property
    def mime_type(self):
        return OUTPUT_MIME[self.format]


def _format_list(preset, value):
    """``webp``, ``"avif, webp"`` or ``[avif, webp]`` -> ``["avif", "webp"]``."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"preset {preset!r}: format must be a name or a list of names, got {value!r}")
    return [str(item).strip().lower() for item in value]


def presets_from_config(presets_config):
    """``PRESETS`` (name -> mapping) as a tuple of ``Preset``; at least one."""
    presets = tuple(Preset.from_config(name, spec) for name, spec in presets_config.items())
    if not presets:
        raise ValueError("PRESETS must define at least one preset")
    return presets


def _check_name(name):
    if isinstance(name, str) and name in RESERVED_NAMES:
        raise ValueError(f"preset name {name!r} is reserved")
    if not is_valid_preset_name(name):
        raise ValueError(
            f"preset name {name!r} is invalid: use 1-32 characters a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )


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

