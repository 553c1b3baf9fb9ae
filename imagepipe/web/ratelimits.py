"""Request-rate limits per API key (per client address without keys), with ``limits``.

``RATE_LIMIT_UPLOADS`` and ``RATE_LIMIT_READS`` are rates in the ``limits``
library's notation ("120/minute", "10/second;1000/hour"; "off" for none),
counted in a moving window.  ``RATE_LIMIT_STORAGE`` says where the counters
live: ``memory://`` (the default: each gateway process counts on its own, so
N gateways allow N times the rate) or a shared store such as
``redis://host:6379`` so that every gateway counts together.
"""
import math
import time

from limits import parse_many, storage, strategies

from imagepipe.errors import RateLimited


class RateLimits:
    def __init__(self, rates, storage_url="memory://"):
        """``rates``: {kind: limits rate string or "" for no limit}."""
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_url))
        self._rates = {kind: parse_many(rate) for kind, rate in rates.items() if rate}

    @classmethod
    def from_limits(cls, client_limits):
        return cls({"upload": client_limits.upload_rate, "read": client_limits.read_rate},
                   client_limits.rate_limit_storage)

    def hit(self, kind, who):
        """Count one request of ``kind`` by ``who``; ``RateLimited`` if over any of its rates."""
        for item in self._rates.get(kind, ()):
            if not self._limiter.hit(item, kind, str(who)):
                reset_at, _remaining = self._limiter.get_window_stats(item, kind, str(who))
                raise RateLimited(
                    "too many {} requests: the limit is {}".format(kind, item),
                    retry_after=math.ceil(max(1.0, reset_at - time.time())))
