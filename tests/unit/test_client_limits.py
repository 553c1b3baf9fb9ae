"""API keys as tenants, rate limits and the minimum transfer rate, without a server."""
import io

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from imagepipe.errors import RateLimited, Unauthorized
from imagepipe.ids import image_id_for
from imagepipe.settings import Settings
from imagepipe.web.keys import ApiKeys, parse_api_keys
from imagepipe.web.limits import MinimumRate, RateLimitedReader, TooSlow
from imagepipe.web.ratelimits import RateLimits


def request_with(authorization=None):
    headers = {"Authorization": authorization} if authorization else {}
    return Request(EnvironBuilder(path="/images", headers=headers).get_environ())


def test_named_and_bare_keys_are_tenants_that_never_show_the_key():
    keys = parse_api_keys("alice:secret-a, secret-b")
    assert keys[0].tenant == "alice"
    assert keys[1].tenant.startswith("key-") and "secret-b" not in keys[1].tenant
    api = ApiKeys(keys)
    assert api.tenant_of(request_with("Bearer secret-a")) == "alice"
    assert api.tenant_of(request_with("bearer  secret-b ")) == keys[1].tenant
    for bad in (None, "Bearer nope", "Basic secret-a", "Bearer "):
        with pytest.raises(Unauthorized):
            api.tenant_of(request_with(bad))
    assert ApiKeys(keys, tenants=False).tenant_of(request_with("Bearer secret-a")) is None
    assert ApiKeys(()).tenant_of(request_with()) is None  # no keys: open


@pytest.mark.parametrize("value, message", [
    (",", "names no key"), (" , ,", "names no key"), ("alice:", "no key after"),
    ("bad name!:x", "use 1-64 characters"), ("a:k1,a:k2", "same name"),
])
def test_api_keys_that_would_silently_open_or_confuse_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_config({"API_KEYS": value})


def test_ids_are_per_tenant_and_unchanged_without_tenants():
    sha = "ab" * 32
    assert image_id_for(sha) == sha[:32]
    assert image_id_for(sha, "alice") != image_id_for(sha, "bob") != sha[:32]


def test_rate_limits_count_per_key_and_say_when_to_retry():
    limits = RateLimits({"upload": "3/minute", "read": ""})
    for _ in range(3):
        limits.hit("upload", "alice")
    with pytest.raises(RateLimited) as refused:
        limits.hit("upload", "alice")
    assert refused.value.http_status == 429 and 1 <= refused.value.retry_after <= 60
    limits.hit("upload", "bob")  # another key has its own count
    for _ in range(100):
        limits.hit("read", "alice")  # "" is no limit


def test_rate_settings_are_validated_at_start_up():
    assert Settings.from_config({"RATE_LIMIT_UPLOADS": "off"}).client_limits.upload_rate == ""
    with pytest.raises(ValueError):
        Settings.from_config({"RATE_LIMIT_READS": "lots"})


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_trickle_is_cut_after_the_grace_period():
    clock = FakeClock()
    rate = MinimumRate(min_rate=1000, grace=5, clock=clock)
    reader = RateLimitedReader(io.BytesIO(b"x" * 100_000), rate)
    clock.now = 4.9
    reader.read(10)  # within the grace period anything goes
    clock.now = 10
    reader.read(6000)  # 6010 bytes in 10 s: above 1000 B/s after the 5 s grace
    clock.now = 20
    with pytest.raises(TooSlow):
        reader.read(10)  # 6020 bytes in 20 s: below 1000 B/s over the 15 s after grace
    assert rate.seconds_for(50_000) == 55
