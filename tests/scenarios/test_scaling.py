"""The scaler on the real broker: from zero to SCALE_MAX and back, two bursts, nothing lost (tests/scenarios/scaling.py)."""
import pytest

from tests.scenarios.scaling import MEASURES, parse_args, print_table, run

pytestmark = pytest.mark.slow


# the full bursts with the default counting; the management API's a shorter run
@pytest.mark.parametrize("counting, burst, second_burst", [("amqp", 100, 30), ("management", 40, 15)])
def test_imaging_follows_the_queue_from_zero_and_back_losing_nothing(counting, burst, second_burst):
    """AMQP alone (the default) and with jobs in flight from the management API."""
    summary = run(parse_args(["--burst", str(burst), "--second-burst", str(second_burst), "--max", "2",
                              "--idle", "5", "--cooldown", "2"]
                             + (["--management"] if counting == "management" else [])))
    print_table(summary, MEASURES)
    assert summary["processes_at_start"] == 0 and summary["consumers_at_start"] == 0
    assert summary["cold_starts"] >= 1
    assert summary["max_running_first_burst"] == 2  # SCALE_MAX reached, never passed
    # a process scaled down mid-burst may still finish its jobs beside its replacement
    assert summary["max_processes_first_burst"] <= 3
    assert summary["lost"] == 0 and summary["not_done"] == 0
    assert summary["uploads_accepted"] == summary["distinct_images"] == burst + second_burst
    assert summary["renditions"] == 2 * (burst + second_burst) and summary["duplicated_renditions"] == 0
    assert summary["queues_not_empty"] == {}
    assert summary["consumers_at_end"] == 0 and summary["orphans"] == []
    assert summary["unexpected_exits"] == 0
    assert summary["ok"], summary
