"""How many imaging processes the job queue needs: a pure decision, no I/O.

Every poll the scaler hands ``Policy.decide`` what the queue looks like
(``Observation``), how many processes it runs and the time; it answers how
many it wants and why (``Decision``).  The rules:

* **Up fast.**  Jobs are *ready* (waiting in the queue) only when every
  consumer's prefetch window is full, so ready jobs mean every running
  process is busy: want enough processes for the ready jobs plus the ones in
  flight, at once, no cool-down.  From zero that is a **cold start**: one
  process the moment a job is seen.
* **Down slowly.**  One process fewer only after the load has needed fewer
  for ``down_cooldown`` seconds, and ``down_cooldown`` after the last change.
  The load is ``ready + unacknowledged`` when the management API reports
  unacknowledged jobs; over AMQP alone jobs in flight are invisible, so then
  "needed fewer" means "no job waited" for the whole cool-down.
* **To the minimum when idle.**  No job ready, in flight or waiting out a
  retry delay for ``idle_seconds``: down to ``minimum`` (0 by default) in
  one step.  A retry waiting counts as work: it comes back to the queue.
* Always within ``[minimum, maximum]``.

Stopping is graceful (SIGTERM: nameko finishes running jobs), so a wrong
guess about jobs in flight costs time, never a job.
"""
import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Observation:
    ready: int  # jobs waiting in the job queue
    consumers: int  # consumers of the job queue: imaging processes taking work
    retrying: int = 0  # jobs waiting out a retry delay (imaging.jobs.retry.<delay>s)
    unacked: Optional[int] = None  # delivered, not yet acknowledged; None: unknown (AMQP only)

    @property
    def has_work(self):
        return self.ready > 0 or self.retrying > 0 or bool(self.unacked)


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    cold_start: bool = False


class Policy:
    """Remembers when work was last seen and when the count last changed."""

    def __init__(self, settings, now):
        self.minimum = settings.minimum
        self.maximum = settings.maximum
        self.jobs_per_process = settings.jobs_per_process
        self.down_cooldown = settings.down_cooldown
        self.idle_seconds = settings.idle_seconds
        self.last_work = now
        self.last_change = now
        self.fewer_needed_since = None

    def decide(self, observation, running, now):
        """The ``Decision`` for ``observation`` with ``running`` processes at time ``now``."""
        if observation.has_work:
            self.last_work = now
        needed = self.needed(observation, running)
        decision = self._decide(observation, running, needed, now)
        if decision.desired != running:
            self.last_change = now
        if decision.desired > running:
            self.fewer_needed_since = None
        return decision

    def needed(self, observation, running):
        """Processes the queue asks for; None when it cannot tell (AMQP only, no job waiting)."""
        if observation.unacked is not None:
            load = observation.ready + observation.unacked
        elif observation.ready > 0:
            # every consumer is full; processes still starting have room for their share
            load = observation.ready + observation.consumers * self.jobs_per_process
        else:
            return None
        return math.ceil(load / self.jobs_per_process)

    def _decide(self, observation, running, needed, now):
        if running < self.minimum:
            return Decision(self.minimum, "below SCALE_MIN={}".format(self.minimum))
        if running > self.maximum:
            return Decision(self.maximum, "above SCALE_MAX={}".format(self.maximum))
        if needed is not None and needed > running and running < self.maximum:
            desired = min(needed, self.maximum)
            return Decision(desired, "{} ready, {} in flight: {} process(es) needed{}".format(
                observation.ready, _in_flight(observation, self.jobs_per_process),
                needed, " (capped at SCALE_MAX)" if needed > self.maximum else ""),
                cold_start=running == 0)
        idle_for = now - self.last_work
        if running > self.minimum and not observation.has_work and idle_for >= self.idle_seconds:
            return Decision(self.minimum, "idle for {:.0f} s: down to SCALE_MIN={}".format(
                idle_for, self.minimum))
        fewer = needed < running if needed is not None else observation.ready == 0
        if not fewer or running <= max(self.minimum, 1):
            self.fewer_needed_since = None
            return Decision(running, "steady")
        if self.fewer_needed_since is None:
            self.fewer_needed_since = now
        calm_for = min(now - self.fewer_needed_since, now - self.last_change)
        if calm_for < self.down_cooldown:
            return Decision(running, "steady (cooling down)")
        return Decision(running - 1, "{} for {:.0f} s: one process fewer".format(
            "{} process(es) needed".format(needed) if needed is not None else "no job waiting",
            calm_for))


def _in_flight(observation, jobs_per_process):
    if observation.unacked is not None:
        return observation.unacked
    return "~{}".format(observation.consumers * jobs_per_process)
