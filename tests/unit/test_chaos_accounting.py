"""The chaos scenario counts a fault only once it happened, and fails a run that missed one."""
import random
import time

from tests.scenarios import chaos


def test_a_fault_that_cannot_be_injected_is_recorded_not_counted(monkeypatch):
    def no_rabbitmqctl(down_seconds):
        raise FileNotFoundError("rabbitmqctl")

    monkeypatch.setattr(chaos, "rabbitmq_restart", no_rabbitmqctl)
    stats = chaos.Stats()
    chaos.run_chaos([(0.0, "restart_broker")], {}, stats, random.Random(1), time.monotonic())
    assert stats.counts["broker_restarts"] == 0
    assert stats.fault_errors == ["restart_broker: FileNotFoundError('rabbitmqctl')"]


def test_faults_missing_names_each_fault_injected_other_than_asked():
    counts = {"imaging_kills": 2, "storage_restarts": 0, "broker_restarts": 1, "client_retries": 7}
    requested = {"imaging_kills": 2, "storage_restarts": 1, "broker_restarts": 1}
    assert chaos.faults_missing(requested, counts) == {"storage_restarts": (1, 0)}
    assert chaos.faults_missing({"imaging_kills": 2}, counts) == {}
