"""What a client may cost the gateway: time, connections, memory and request rates.

A hostile or merely slow client must not hold what other clients need.  The
gateway's HTTP server (``services/extensions/http.py``) enforces:

- a connection cap, and accept() that survives running out of descriptors;
- per read/write inactivity (``socket_timeout``), an idle keep-alive limit,
  and a deadline for the request line and headers;
- a minimum transfer rate for request bodies and streamed responses after a
  grace period (``MinimumRate``), so a trickle cannot hold a connection for
  ever, and bodies read before any nameko worker is taken;
- request-rate limits per API key (per address when keys are off).

Nothing here imports nameko or eventlet: the server supplies the clock.
"""
import resource
import tempfile
import time
from dataclasses import dataclass

from imagepipe.configvalues import positive, positive_int


def default_max_connections():
    """Half the descriptors this process may open (the rest: broker, files, pipes)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 2))


@dataclass(frozen=True)
class ClientLimits:
    socket_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    header_timeout: float = 10.0
    max_connections: int = 0  # 0: default_max_connections()
    min_rate: int = 16 * 1024  # bytes per second, after the grace period
    rate_grace: float = 10.0
    spool_memory_bytes: int = 4 * 1024 * 1024
    upload_rate: str = "600/minute"
    read_rate: str = "6000/minute"
    rate_limit_storage: str = "memory://"

    @classmethod
    def from_config(cls, config):
        return cls(
            socket_timeout=positive(config.get("HTTP_SOCKET_TIMEOUT"), "HTTP_SOCKET_TIMEOUT",
                                    cls.socket_timeout),
            keepalive_timeout=positive(config.get("HTTP_KEEPALIVE_TIMEOUT"), "HTTP_KEEPALIVE_TIMEOUT",
                                       cls.keepalive_timeout),
            header_timeout=positive(config.get("HTTP_HEADER_TIMEOUT"), "HTTP_HEADER_TIMEOUT",
                                    cls.header_timeout),
            max_connections=positive_int(config.get("HTTP_MAX_CONNECTIONS"), "HTTP_MAX_CONNECTIONS",
                                         default_max_connections()),
            min_rate=positive_int(config.get("HTTP_MIN_RATE"), "HTTP_MIN_RATE", cls.min_rate),
            rate_grace=positive(config.get("HTTP_RATE_GRACE"), "HTTP_RATE_GRACE", cls.rate_grace),
            spool_memory_bytes=positive_int(config.get("UPLOAD_SPOOL_MEMORY"), "UPLOAD_SPOOL_MEMORY",
                                            cls.spool_memory_bytes),
            upload_rate=_rate(config.get("RATE_LIMIT_UPLOADS"), cls.upload_rate),
            read_rate=_rate(config.get("RATE_LIMIT_READS"), cls.read_rate),
            rate_limit_storage=str(config.get("RATE_LIMIT_STORAGE") or cls.rate_limit_storage),
        )


def _rate(value, default):
    """A ``limits`` rate string ("120/minute", "10/second;500/hour"); "off" disables."""
    text = str(value or default).strip()
    if text.lower() in ("off", "none", "0"):
        return ""
    from limits import parse_many  # validated at start-up, not on the first request

    parse_many(text)
    return text


class TooSlow(Exception):
    """The peer moves bytes slower than the minimum rate."""


class MinimumRate:
    """After ``grace`` seconds, a transfer must average ``min_rate`` bytes per second.

    ``moved(n)`` after every read or write; it raises ``TooSlow`` once the
    average falls below the rate.  ``deadline(total)`` is the latest moment a
    transfer of ``total`` bytes may end, for a timer on a single blocking call.
    """

    def __init__(self, min_rate, grace, clock=time.monotonic):
        self.min_rate = min_rate
        self.grace = grace
        self.clock = clock
        self.started = clock()
        self.total = 0

    def moved(self, count):
        self.total += count
        elapsed = self.clock() - self.started
        if elapsed > self.grace and self.total < self.min_rate * (elapsed - self.grace):
            raise TooSlow("{} bytes in {:.1f} s, below the minimum of {} bytes/s".format(
                self.total, elapsed, self.min_rate))

    def seconds_for(self, total):
        return self.grace + total / self.min_rate


class RateLimitedReader:
    """A file-like reader that enforces ``MinimumRate`` on what it reads."""

    def __init__(self, stream, rate):
        self._stream = stream
        self._rate = rate

    def read(self, size=-1):
        data = self._stream.read(size)
        self._rate.moved(len(data))
        return data

    def readline(self, size=-1):
        data = self._stream.readline(size)
        self._rate.moved(len(data))
        return data

    def __getattr__(self, name):
        return getattr(self._stream, name)


def spool(memory_bytes, directory=None):
    """A temporary file kept in memory up to ``memory_bytes``, then on disk."""
    return tempfile.SpooledTemporaryFile(max_size=memory_bytes, dir=directory or None)

