"""Presets: the renditions every image gets, and the formats that go in and out.

Plain data and validation, no Pillow: ``imagepipe.settings`` reads presets
from config.yaml through this module, so reading configuration never loads
an image library.
"""
from collections.abc import Mapping
from dataclasses import dataclass

from imagepipe.ids import RESERVED_NAMES, is_valid_preset_name

# Accepted uploads (Pillow plugin names); ALLOWED_FORMATS narrows or widens it.
DEFAULT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF")
OUTPUT_FORMATS = ("webp", "jpeg", "png", "avif")
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
_PRESET_KEYS = ("width", "height", "fit", "format", "quality")


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
        _check_choice(self.name, "fit", self.fit, FITS)
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
        return OUTPUT_MIME[self.format]


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

