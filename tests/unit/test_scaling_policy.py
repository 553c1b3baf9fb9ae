"""The scaler's decision (imagepipe.scaling.policy): observations and time in, a count and a reason out."""
import pytest

from imagepipe.scaling.policy import Observation, Policy
from imagepipe.scaling.settings import ScalingSettings

SETTINGS = ScalingSettings(minimum=0, maximum=4, jobs_per_process=2, down_cooldown=30.0,
                           idle_seconds=60.0)


def policy(settings=SETTINGS, now=0.0):
    return Policy(settings, now)


def ready(count, consumers=0, retrying=0, unacked=None):
    return Observation(ready=count, consumers=consumers, retrying=retrying, unacked=unacked)


def test_a_job_at_zero_starts_exactly_one_process_at_once():
    decision = policy().decide(ready(1), running=0, now=0.1)
    assert decision.desired == 1 and decision.cold_start
    assert "1 ready" in decision.reason


def test_a_process_still_starting_is_not_counted_full():
    # one process booting (no consumer yet), one job waiting: it will take it
    scaler = policy()
    scaler.decide(ready(1), running=0, now=0.0)
    assert scaler.decide(ready(1), running=1, now=0.25).desired == 1


def test_a_burst_scales_straight_to_the_maximum():
    decision = policy().decide(ready(100), running=0, now=0.0)
    assert decision.desired == 4 and "capped at SCALE_MAX" in decision.reason


def test_ready_jobs_beside_full_consumers_add_processes():
    # two processes consuming, each holding its 2 jobs, 1 more waiting: 5 jobs need 3
    decision = policy().decide(ready(1, consumers=2), running=2, now=0.0)
    assert decision.desired == 3 and not decision.cold_start


def test_never_above_the_maximum_nor_below_the_minimum():
    settings = ScalingSettings(minimum=1, maximum=2, jobs_per_process=2)
    assert policy(settings).decide(ready(0), running=0, now=0.0).desired == 1
    assert policy(settings).decide(ready(50, consumers=2), running=2, now=0.0).desired == 2
    assert policy(settings).decide(ready(0), running=5, now=0.0).desired == 2


def test_down_one_process_per_cooldown_when_no_job_waits():
    scaler = policy(ScalingSettings(maximum=4, jobs_per_process=2, down_cooldown=30.0,
                                    idle_seconds=300.0))
    scaler.decide(ready(100), running=0, now=0.0)  # -> 4
    assert scaler.decide(ready(0, consumers=4), running=4, now=1.0).desired == 4
    assert scaler.decide(ready(0, consumers=4), running=4, now=29.0).desired == 4
    decision = scaler.decide(ready(0, consumers=4), running=4, now=31.0)
    assert decision.desired == 3 and "one process fewer" in decision.reason
    # the next step waits a whole cool-down after the change
    assert scaler.decide(ready(0, consumers=3), running=3, now=50.0).desired == 3
    assert scaler.decide(ready(0, consumers=3), running=3, now=61.5).desired == 2


def test_waiting_jobs_restart_the_cooldown():
    scaler = policy()
    scaler.decide(ready(0, consumers=2), running=2, now=0.0)
    scaler.decide(ready(0, consumers=2), running=2, now=20.0)
    assert scaler.decide(ready(1, consumers=2), running=2, now=25.0).desired == 3
    assert scaler.decide(ready(0, consumers=3), running=3, now=50.0).desired == 3


def test_idle_goes_to_zero_and_is_reset_by_any_work():
    scaler = policy()
    scaler.decide(ready(3), running=0, now=0.0)
    # down steps stop at one process: zero only after the idle period
    assert scaler.decide(ready(0, consumers=1), running=1, now=40.0).desired == 1
    assert scaler.decide(ready(0, consumers=1, retrying=1), running=1, now=59.0).desired == 1
    assert scaler.decide(ready(0, consumers=1), running=1, now=100.0).desired == 1  # 41 s since the retry
    decision = scaler.decide(ready(0, consumers=1), running=1, now=119.5)
    assert decision.desired == 0 and decision.reason.startswith("idle for 60 s")


def test_a_waiting_retry_does_not_start_a_process():
    # nothing is runnable until its delay is over; then it is a ready job
    assert policy().decide(ready(0, retrying=3), running=0, now=0.0).desired == 0


def test_jobs_in_flight_from_the_management_api_hold_processes():
    scaler = policy()
    scaler.decide(ready(0, consumers=3, unacked=6), running=3, now=0.0)
    # 6 jobs in flight need all 3 processes however long no job waits
    assert scaler.decide(ready(0, consumers=3, unacked=6), running=3, now=100.0).desired == 3
    # 2 jobs in flight need 1: down one per cool-down once that has lasted
    assert scaler.decide(ready(0, consumers=3, unacked=2), running=3, now=101.0).desired == 3
    decision = scaler.decide(ready(0, consumers=3, unacked=2), running=3, now=131.0)
    assert decision.desired == 2 and decision.reason.startswith("1 process(es) needed")


def test_in_flight_jobs_count_towards_scaling_up():
    decision = policy().decide(ready(3, consumers=1, unacked=2), running=1, now=0.0)
    assert decision.desired == 3 and "2 in flight" in decision.reason


@pytest.mark.parametrize("config, message", [
    ({"SCALE_MIN": "3", "SCALE_MAX": "2"}, "SCALE_MAX"),
    ({"SCALE_MAX": "0"}, "SCALE_MAX"),
    ({"SCALE_MIN": "-1"}, "SCALE_MIN"),
    ({"SCALE_IDLE_SECONDS": "0"}, "SCALE_IDLE_SECONDS"),
    ({"SCALE_JOBS_PER_PROCESS": "0"}, "SCALE_JOBS_PER_PROCESS"),
])
def test_bad_settings_fail_at_start_up(config, message):
    with pytest.raises(ValueError, match=message):
        ScalingSettings.from_config(config)


def test_settings_defaults_follow_the_machine_and_the_job_deadline():
    import os

    settings = ScalingSettings.from_config({"RENDER_TIMEOUT": "60", "RPC_TIMEOUT": "5"})
    assert (settings.minimum, settings.maximum) == (0, len(os.sched_getaffinity(0)))
    assert settings.stop_timeout == 60 + 3 * 5 + 10
    assert settings.metrics_address is None and settings.management_url == ""
