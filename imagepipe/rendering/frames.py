"""The render worker protocol: length-prefixed msgpack frames, checked field by field.

A render worker is where a decoder exploit would land, so what it sends back
is data, never code: frames are msgpack (no pickle, no extension types), and
the imaging side accepts exactly these shapes and nothing else --

    worker -> imaging   {"hello": {"network": str, "no_new_privs": str, "seccomp": str}}
                        {"pixels": int}                 the image's width x height x frames
                        {"renditions": [{field: value}]}  one per preset (``Rendition`` fields)
                        {"error": {"code": str, "message": str}}
    imaging -> worker   {"render": {"data": bytes, "presets": [{field: value}],
                                    "options": {name: value}, "limits": {name: int}}}

Anything else -- bad msgpack, another key, a wrong type, an unknown error
code -- is a ``ProtocolViolation``: the pool kills that worker and fails the
image.  Errors travel as their stable ``code`` and message and are rebuilt
here as the same ``imagepipe.errors`` class.
"""
import dataclasses
import struct

import msgpack

from imagepipe.errors import ImageTooComplex, InvalidImage, TooManyPixels, UnsupportedFormat

HEADER = struct.Struct("!Q")
_PRIMITIVES = (bytes, str, int, float, bool, type(None))
# The codes a worker may answer with, and what they become on the imaging side.
MEMORY_ERROR = "memory_error"
RENDER_ERROR = "render_error"
# (every one of them permanent: PERMANENT_IMAGE_ERRORS)
IMAGE_ERRORS = {cls.code: cls for cls in (InvalidImage, TooManyPixels, ImageTooComplex,
                                           UnsupportedFormat)}


class ProtocolViolation(Exception):
    """A frame that is not one of the shapes above."""


class RenderError(RuntimeError):
    """An unexpected exception inside the worker (a bug, not the image): retried by imaging."""


def pack(message):
    payload = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(payload)) + payload


def unpack(payload):
    """One frame's payload as a single-key map: ``(key, value)``."""
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True,
                                  ext_hook=_refuse_extension)
    except ProtocolViolation:
        raise
    except Exception as exc:  # msgpack reports bad input with many types
        raise ProtocolViolation("not a msgpack frame ({})".format(type(exc).__name__)) from None
    if not isinstance(message, dict) or len(message) != 1:
        raise ProtocolViolation("a frame must be a map with one key")
    return next(iter(message.items()))


def _refuse_extension(code, data):
    raise ProtocolViolation("msgpack extension type {} is not accepted".format(code))


# -- worker -> imaging ------------------------------------------------------

def expect(payload, *keys):
    """The value of a frame whose key is one of ``keys``; an error frame raises its error."""
    key, value = unpack(payload)
    if key == "error":
        raise error_from(value)
    if key not in keys:
        raise ProtocolViolation("unexpected frame {!r}".format(str(key)[:40]))
    return key, value


def pixels_from(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolViolation("pixels must be a whole number")
    return value


def hello_from(value, fields):
    if not isinstance(value, dict) or set(value) != set(fields):
        raise ProtocolViolation("hello must name exactly {}".format(", ".join(fields)))
    if not all(isinstance(state, str) for state in value.values()):
        raise ProtocolViolation("hello values must be strings")
    return value


def error_frame(exc):
    """An exception raised by a render, as the frame that carries it."""
    if isinstance(exc, MemoryError):
        code, message = MEMORY_ERROR, "out of memory"
    elif isinstance(exc, tuple(IMAGE_ERRORS.values())):
        code, message = exc.code, exc.message
    else:
        code, message = RENDER_ERROR, "{}: {}".format(type(exc).__name__, exc)[:500]
    return {"error": {"code": code, "message": message}}


def error_from(value):
    """The exception an error frame stands for (to be raised)."""
    if not isinstance(value, dict) or set(value) != {"code", "message"} or not all(
            isinstance(part, str) for part in value.values()):
        raise ProtocolViolation("an error is a map of code and message strings")
    code, message = value["code"], value["message"][:1000]
    if code == MEMORY_ERROR:
        return MemoryError(message)
    if code == RENDER_ERROR:
        return RenderError(message)
    if code in IMAGE_ERRORS:
        return IMAGE_ERRORS[code](message)
    raise ProtocolViolation("unknown error code {!r}".format(code[:40]))


def records_from(value, record_class):
    """A list of maps, each rebuilt as ``record_class`` (a dataclass of plain fields)."""
    if not isinstance(value, list):
        raise ProtocolViolation("expected a list of records")
    return [record_from(item, record_class) for item in value]


def record_from(item, record_class):
    fields = {field.name: field for field in dataclasses.fields(record_class)}
    required = {name for name, field in fields.items()
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING}
    if not isinstance(item, dict) or not required <= set(item) <= set(fields):
        raise ProtocolViolation("a {} has fields {}".format(record_class.__name__, ", ".join(fields)))
    for name, value in item.items():
        if not _fits(value, fields[name].type):
            raise ProtocolViolation("{}.{} has the wrong type".format(record_class.__name__, name))
    return record_class(**{name: tuple(value) if isinstance(value, list) else value
                           for name, value in item.items()})


def options_from(options):
    """Render options as ``render`` takes them: msgpack's lists back to tuples (a focus point)."""
    return {name: tuple(value) if isinstance(value, list) else value for name, value in options.items()}


def _fits(value, annotation):
    if annotation is tuple:
        return value is None or (isinstance(value, list) and all(
            isinstance(item, _PRIMITIVES) for item in value))
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (bytes, str, bool):
        return isinstance(value, annotation)
    return isinstance(value, _PRIMITIVES)  # an annotation we do not check further


def record_to(record):
    return dataclasses.asdict(record)
