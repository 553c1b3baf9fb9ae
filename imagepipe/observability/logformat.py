"""Log records that carry their request's correlation id; plain or JSON lines.

``bind(...)`` attaches fields (correlation id, call id) to everything the
current thread logs until ``clear()``.  Under eventlet's monkey patching
(``nameko run``, ``nameko test``) ``threading.local`` is per greenthread, so
each nameko worker has its own.  ``ContextFilter`` copies the fields onto each
record; the formatters print them.

Select the format in config.yaml's LOGGING section (``LOG_FORMAT=json`` for
one JSON object per line, anything else for plain text)::

    formatters:
      default: {"()": imagepipe.observability.logformat.formatter, kind: "${LOG_FORMAT:plain}"}
    filters:
      context: {"()": imagepipe.observability.logformat.ContextFilter}
"""
import json
import logging
import threading
from datetime import datetime, timezone

CONTEXT_FIELDS = ("correlation_id", "call_id")
NO_CONTEXT = "-"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s]: %(message)s"

_context = threading.local()


def bind(**fields):
    _context.fields = dict(fields)


def clear():
    _context.fields = {}


def current():
    return dict(getattr(_context, "fields", None) or {})


class ContextFilter(logging.Filter):
    """Adds the bound fields to every record (``-`` where none is bound)."""

    def filter(self, record):
        fields = current()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name, NO_CONTEXT))
        return True


class ExpectedErrorFilter(logging.Filter):
    """One line, no traceback, for errors a worker was expected to raise.

    nameko logs every expected exception of a worker (a client's 4xx, a 503
    from a storage timeout) with its whole traceback; the message already
    says what happened.  Installed on the ``nameko.containers`` logger.
    """

    def filter(self, record):
        if record.msg.startswith("(expected) error handling worker"):
            record.exc_info = None
            record.exc_text = None
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self, fmt=PLAIN_FORMAT, datefmt=None):
        # defaults: a handler configured without ContextFilter still formats
        super().__init__(fmt, datefmt, defaults={name: NO_CONTEXT for name in CONTEXT_FIELDS})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, exception."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, NO_CONTEXT):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(kind="plain"):
    """The formatter for ``LOG_FORMAT``: ``json``, or plain text otherwise."""
    if str(kind).strip().lower() == "json":
        return JsonFormatter()
    return PlainFormatter()
