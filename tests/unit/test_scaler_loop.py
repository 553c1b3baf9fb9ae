"""The scaler's loop (imagepipe.scaling.scaler.Scaler) with a scripted queue and stand-in processes."""
import logging

from imagepipe.scaling.policy import Observation
from imagepipe.scaling.probe import ProbeFailed
from imagepipe.scaling.scaler import Scaler
from imagepipe.scaling.settings import ScalingSettings
from imagepipe.scaling.supervisor import Supervisor


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Probe:
    def __init__(self):
        self.next = Observation(ready=0, consumers=0)

    def observe(self):
        if isinstance(self.next, Exception):
            raise self.next
        return self.next

    def close(self):
        pass


class Child:
    def __init__(self, number, started):
        self.number, self.started, self.stopping_since, self.exit_code = number, started, None, None


class Processes(Supervisor):
    """The supervisor with records for processes; ``die`` makes one exit unasked."""

    def __init__(self, clock):
        super().__init__(["true"], {}, stop_timeout=30, clock=clock)
        self.dead = []

    def start(self):
        self.children.append(Child(len(self.children) + 1, self.clock()))
        return self.children[-1]

    def _terminate(self, child):
        child.stopping_since = self.clock()

    def die(self, child, code=1):
        child.exit_code = code
        self.children.remove(child)
        self.dead.append(child)

    def reap(self):
        dead, self.dead = self.dead, []
        return dead

    def shutdown(self):
        self.children = []


def scaler(**overrides):
    clock = Clock()
    settings = ScalingSettings(**dict(dict(minimum=0, maximum=2, jobs_per_process=2,
                                           down_cooldown=5, idle_seconds=10), **overrides))
    probe, processes = Probe(), Processes(clock)
    return Scaler(settings, probe, processes, clock=clock), probe, processes, clock


def sample(scaler_, name, **labels):
    return scaler_.metrics.registry.get_sample_value(name, labels or None)


def test_cold_start_is_timed_from_start_to_consumer(caplog):
    caplog.set_level(logging.INFO)
    loop, probe, processes, clock = scaler()
    probe.next = Observation(ready=1, consumers=0)
    assert loop.step().cold_start and len(processes.running) == 1
    clock.now = 0.8
    probe.next = Observation(ready=0, consumers=1)
    loop.step()
    assert sample(loop, "imagepipe_scaler_cold_start_seconds_count") == 1
    assert sample(loop, "imagepipe_scaler_cold_start_seconds_sum") == 0.8
    assert sample(loop, "imagepipe_scaler_desired_processes") == 1
    assert sample(loop, "imagepipe_scaler_processes", state="running") == 1
    assert any("scale up 0 -> 1: 1 ready" in record.getMessage() and "(cold start)" in record.getMessage()
               for record in caplog.records)


def test_a_dead_process_is_replaced_and_a_crash_loop_backs_off():
    loop, probe, processes, clock = scaler(minimum=1)
    loop.step()
    first = processes.running[0]
    clock.now = 1.0
    processes.die(first)  # dies at start-up
    loop.step()
    assert sample(loop, "imagepipe_scaler_unexpected_exits_total") == 1
    assert processes.running == []  # not at once: 2 s back-off
    clock.now = 3.5
    loop.step()
    assert len(processes.running) == 1


def test_no_decision_without_a_reading(caplog):
    loop, probe, processes, clock = scaler()
    probe.next = Observation(ready=10, consumers=0)
    loop.step()
    assert len(processes.running) == 2
    probe.next = ProbeFailed("broker: ConnectionRefusedError")
    clock.now = 100.0  # long past the idle period
    assert loop.step() is None and len(processes.running) == 2
    assert sample(loop, "imagepipe_scaler_probe_failures_total") == 1
    assert any("keeping 2 process(es)" in record.getMessage() for record in caplog.records)


def test_scale_down_stops_processes_gracefully():
    loop, probe, processes, clock = scaler()
    probe.next = Observation(ready=10, consumers=0)
    loop.step()
    probe.next = Observation(ready=0, consumers=2)
    clock.now = 11.0
    decision = loop.step()
    assert decision.desired == 0 and "idle" in decision.reason
    assert processes.running == [] and len(processes.stopping) == 2
    assert sample(loop, "imagepipe_scaler_decisions_total", direction="down") == 1
