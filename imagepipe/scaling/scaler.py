"""The scaler: poll the queue, decide, start or stop imaging processes, say why.

``python -m imagepipe scale [--config config.yaml]`` (``make scale``; ``make
run SCALE=auto`` runs it beside gateway, storage and webhooks).  Runs in the
foreground until SIGTERM or Ctrl-C, then stops its processes gracefully.
"""
import logging
import logging.config
import os
import signal
import threading
import time

from imagepipe.scaling.metrics import ScalerMetrics
from imagepipe.scaling.policy import Policy
from imagepipe.scaling.probe import ProbeFailed, QueueProbe
from imagepipe.scaling.settings import ScalingSettings
from imagepipe.scaling.supervisor import Supervisor, nameko_command

log = logging.getLogger(__name__)

# a process that dies this soon after starting is crash-looping: back off
QUICK_DEATH_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 30.0


class Scaler:
    def __init__(self, settings, probe, supervisor, metrics=None, clock=time.monotonic):
        self.settings = settings
        self.probe = probe
        self.supervisor = supervisor
        self.metrics = metrics or ScalerMetrics()
        self.clock = clock
        self.policy = Policy(settings, clock())
        self.starting = {}  # child -> (started at, cold start?) until the queue has its consumer
        self.quick_deaths = 0
        self.no_start_before = 0.0
        self.probe_failing = False
        self.backing_off = False

    def step(self):
        """One poll: replace the dead, observe, decide, act."""
        now = self.clock()
        self._handle_exits(now)
        try:
            observation = self.probe.observe()
        except ProbeFailed as exc:
            self.metrics.probe_failures.inc()
            if not self.probe_failing:
                log.warning("cannot read the job queue (%s); keeping %d process(es) until it answers",
                            exc, len(self.supervisor.running))
            self.probe_failing = True
            return None
        if self.probe_failing:
            log.info("job queue readable again")
            self.probe_failing = False
        self.metrics.observed(observation)
        self._track_starts(observation, now)
        running = len(self.supervisor.running)
        decision = self.policy.decide(observation, running, now)
        self._apply(decision, running, now)
        self.metrics.desired.set(decision.desired)
        self.metrics.processes.labels("running").set(len(self.supervisor.running))
        self.metrics.processes.labels("stopping").set(len(self.supervisor.stopping))
        return decision

    def _apply(self, decision, running, now):
        if decision.desired > running:
            if now < self.no_start_before:
                if not self.backing_off:
                    log.warning("want %d process(es) (%s), but imaging processes keep dying at "
                                "start-up: next start in %.0f s", decision.desired, decision.reason,
                                self.no_start_before - now)
                self.backing_off = True
                return
            self.backing_off = False
            for index in range(decision.desired - running):
                child = self.supervisor.start()
                self.starting[child] = (now, decision.cold_start and index == 0)
            self.metrics.decisions.labels("up").inc()
            log.info("scale up %d -> %d: %s%s", running, decision.desired, decision.reason,
                     " (cold start)" if decision.cold_start else "")
        elif decision.desired < running:
            for _ in range(running - decision.desired):
                self.starting.pop(self.supervisor.stop_one(), None)
            self.metrics.decisions.labels("down").inc()
            log.info("scale down %d -> %d: %s", running, decision.desired, decision.reason)

    def _handle_exits(self, now):
        for child in self.supervisor.reap():
            self.starting.pop(child, None)
            self.metrics.unexpected_exits.inc()
            if now - child.started < QUICK_DEATH_SECONDS:
                self.quick_deaths += 1
                backoff = min(2.0 ** self.quick_deaths, MAX_BACKOFF_SECONDS)
                self.no_start_before = now + backoff
            else:
                self.quick_deaths = 0
                backoff = 0
            log.warning("%s exited unasked with status %s after %.1f s; replacing it%s", child,
                        child.exit_code, now - child.started,
                        " in {:.0f} s".format(backoff) if backoff else "")

    def _track_starts(self, observation, now):
        """Time from start to consumer, for each process still starting."""
        consuming = len(self.supervisor.running) - len(self.starting)
        for child, (started, cold) in sorted(self.starting.items(), key=lambda item: item[1][0]):
            if observation.consumers <= consuming:
                break
            consuming += 1
            del self.starting[child]
            self.quick_deaths = 0
            seconds = now - started
            self.metrics.process_start.observe(seconds)
            if cold:
                self.metrics.cold_start.observe(seconds)
                log.info("cold start: %s consuming %.2f s after it was started", child, seconds)

    def run(self, stop_event):
        log.info("scaler: %d to %d imaging processes (%d jobs each), idle after %.0f s, "
                 "cool-down %.0f s, counting %s", self.settings.minimum, self.settings.maximum,
                 self.settings.jobs_per_process, self.settings.idle_seconds,
                 self.settings.down_cooldown,
                 "ready + unacknowledged jobs (management API)" if self.settings.management_url
                 else "ready jobs (AMQP)")
        try:
            while not stop_event.is_set():
                self.step()
                stop_event.wait(self.settings.poll_interval)
        finally:
            log.info("scaler stopping: SIGTERM to %d imaging process(es)", len(self.supervisor.children))
            self.supervisor.shutdown()
            self.probe.close()


def load_config(path):
    """config.yaml exactly as ``nameko run`` reads it, so scaler and processes agree."""
    import yaml
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    with open(path) as config_file:
        return yaml.safe_load(config_file)


def build(config, config_path):
    settings = ScalingSettings.from_config(config)
    probe = QueueProbe(settings.amqp_uri, settings.job_retry_delays, settings.management_url)
    env = dict(os.environ, MAX_WORKERS=str(settings.jobs_per_process))
    supervisor = Supervisor(nameko_command(config_path), env, settings.stop_timeout)
    return Scaler(settings, probe, supervisor)


def main(config_path="config.yaml"):
    config = load_config(config_path)
    if config.get("LOGGING"):
        logging.config.dictConfig(config["LOGGING"])
    else:
        logging.basicConfig(level=logging.INFO)
    scaler = build(config, config_path)
    if scaler.settings.metrics_address:
        port = scaler.metrics.serve(scaler.settings.metrics_address)
        log.info("scaler metrics on http://%s:%d/metrics", scaler.settings.metrics_address[0], port)
    stop = threading.Event()

    def request_stop(signum, _frame):
        log.info("scaler got %s", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)
    scaler.run(stop)
    return 0
