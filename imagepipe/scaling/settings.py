"""``ScalingSettings``: the ``SCALE_*`` keys of config.yaml, parsed and checked once."""
import os
from dataclasses import dataclass, field

from imagepipe.configvalues import non_negative_int, positive, positive_int
from imagepipe.settings import Settings, parse_metrics_address


def default_maximum():
    """The cores this process may run on (a container's CPU set, not the host's)."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class ScalingSettings:
    minimum: int = 0
    maximum: int = field(default_factory=default_maximum)
    # MAX_WORKERS of each imaging process: its AMQP prefetch, the jobs it holds at once
    jobs_per_process: int = 2
    poll_interval: float = 0.25
    # a process fewer only after the queue needed fewer for this long, and this
    # long after the last change
    down_cooldown: float = 30.0
    # no job waiting, running or retrying for this long: down to ``minimum``
    idle_seconds: float = 60.0
    # SIGTERM, then SIGKILL after this long (the job goes back to the queue)
    stop_timeout: float = 85.0
    # Prometheus exporter of the scaler ((host, port); None: none)
    metrics_address: tuple = None
    # RabbitMQ management API (http://user:password@host:15672); empty: AMQP only
    management_url: str = field(default="", repr=False)
    amqp_uri: str = field(default=Settings.amqp_uri, repr=False)
    job_retry_delays: tuple = Settings.job_retry_delays

    @classmethod
    def from_config(cls, config):
        settings = Settings.from_config(config)
        minimum = non_negative_int(config.get("SCALE_MIN"), "SCALE_MIN", cls.minimum)
        maximum = non_negative_int(config.get("SCALE_MAX"), "SCALE_MAX", default_maximum())
        if maximum < max(minimum, 1):
            raise ValueError("SCALE_MAX ({}) must be at least 1 and at least SCALE_MIN ({})".format(
                maximum, minimum))
        return cls(
            minimum=minimum,
            maximum=maximum,
            jobs_per_process=positive_int(config.get("SCALE_JOBS_PER_PROCESS"),
                                          "SCALE_JOBS_PER_PROCESS", cls.jobs_per_process),
            poll_interval=positive(config.get("SCALE_POLL_INTERVAL"), "SCALE_POLL_INTERVAL",
                                   cls.poll_interval),
            down_cooldown=positive(config.get("SCALE_DOWN_COOLDOWN"), "SCALE_DOWN_COOLDOWN",
                                   cls.down_cooldown),
            idle_seconds=positive(config.get("SCALE_IDLE_SECONDS"), "SCALE_IDLE_SECONDS",
                                  cls.idle_seconds),
            stop_timeout=positive(config.get("SCALE_STOP_TIMEOUT"), "SCALE_STOP_TIMEOUT",
                                  job_deadline(settings)),
            metrics_address=parse_metrics_address(config.get("SCALE_METRICS_ADDRESS")),
            management_url=str(config.get("SCALE_MANAGEMENT_URL") or "").rstrip("/"),
            amqp_uri=settings.amqp_uri,
            job_retry_delays=settings.job_retry_delays,
        )


def job_deadline(settings, shutdown_seconds=10.0):
    """How long a SIGTERMed imaging process may take to finish its jobs and exit.

    A job is bounded by its render (RENDER_TIMEOUT) and three broker round
    trips under RPC_TIMEOUT (claim, complete, the event's confirm); nameko
    waits for running workers before it exits, then needs a few seconds to
    close its connections (measured ~4 s).
    """
    return settings.render_timeout + 3 * settings.rpc_timeout + shutdown_seconds
