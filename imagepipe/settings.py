"""Typed view of ``config.yaml``.

nameko hands every extension the raw config mapping; the services read it once
through :meth:`Settings.from_config` so that defaults and validation live in
one place and misconfiguration fails at start-up, not on the first upload.
"""
import os
from dataclasses import dataclass, field

from imagepipe.configvalues import as_bool, as_list, positive, positive_int
from imagepipe.rendering.presets import DEFAULT_FORMATS, DEFAULT_PRESETS, presets_from_config
from imagepipe.storage.blobs import BlobSettings


@dataclass(frozen=True)
class Settings:
    amqp_uri: str = "amqp://guest:guest@localhost:5672/"
    storage_root: str = "./data"
    storage_db: str = ""
    public_url: str = ""
    presets: tuple = ()
    allowed_formats: tuple = DEFAULT_FORMATS
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    rpc_timeout: float = 5.0
    job_retry_delays: tuple = (1.0, 5.0, 30.0)
    job_max_attempts: int = 5
    stalled_after: float = 300.0
    render_workers: int = 2
    render_timeout: float = 60.0
    render_memory_mb: int = 1024
    render_nice: int = 10
    api_keys: tuple = field(default=(), repr=False)
    # signed, expiring URLs of image bytes (imagepipe.web.signedurls); empty: none
    url_signing_secret: str = field(default="", repr=False)
    url_signing_ttl: float = 3600.0
    # live status streams (GET /images/<id>/events)
    live_recheck_interval: float = 15.0
    live_max_seconds: float = 300.0
    # where blobs live: files under storage_root, or S3 (BLOB_STORE, S3_*)
    blobs: BlobSettings = BlobSettings()
    # RabbitMQ queue type of the job, retry and dead-letter queues
    job_queue_type: str = "classic"
    job_delivery_limit: int = 10
    rpc_queue_type: str = "classic"
    # metrics exporter of this process ((host, port); None: no exporter)
    metrics_address: tuple = None
    # completion webhooks (imagepipe.webhooks)
    webhook_retry_delays: tuple = (1.0, 5.0, 30.0, 120.0)
    webhook_timeout: float = 5.0
    webhook_secret: str = field(default="", repr=False)
    webhook_allow_private: bool = False

    @classmethod
    def from_config(cls, config):
        storage_root = str(config.get("STORAGE_ROOT") or "./data")
        return cls(
            amqp_uri=str(config.get("AMQP_URI") or cls.amqp_uri),
            storage_root=storage_root,
            storage_db=str(config.get("STORAGE_DB") or default_db_url(storage_root)),
            public_url=str(config.get("PUBLIC_URL") or "").rstrip("/"),
            presets=presets_from_config(config.get("PRESETS") or DEFAULT_PRESETS),
            allowed_formats=tuple(
                name.upper() for name in as_list(config.get("ALLOWED_FORMATS"), DEFAULT_FORMATS)),
            max_upload_bytes=int(config.get("MAX_UPLOAD_BYTES") or cls.max_upload_bytes),
            max_pixels=int(config.get("MAX_PIXELS") or cls.max_pixels),
            rpc_timeout=float(config.get("RPC_TIMEOUT") or cls.rpc_timeout),
            job_retry_delays=tuple(
                float(delay) for delay in
                as_list(config.get("JOB_RETRY_DELAYS"), cls.job_retry_delays)
            ),
            job_max_attempts=int(config.get("JOB_MAX_ATTEMPTS") or cls.job_max_attempts),
            stalled_after=float(config.get("STALLED_AFTER") or cls.stalled_after),
            render_workers=int(config.get("RENDER_WORKERS") or cls.render_workers),
            render_timeout=float(config.get("RENDER_TIMEOUT") or cls.render_timeout),
            render_memory_mb=int(config.get("RENDER_MEMORY_MB") or cls.render_memory_mb),
            render_nice=int(config.get("RENDER_NICE") if config.get("RENDER_NICE") is not None
                            else cls.render_nice),
            api_keys=tuple(as_list(config.get("API_KEYS"), ())),
            url_signing_secret=str(config.get("URL_SIGNING_SECRET") or ""),
            url_signing_ttl=positive(config.get("URL_SIGNING_TTL"), "URL_SIGNING_TTL",
                                     cls.url_signing_ttl),
            live_recheck_interval=positive(config.get("LIVE_RECHECK_INTERVAL"), "LIVE_RECHECK_INTERVAL",
                                           cls.live_recheck_interval),
            live_max_seconds=positive(config.get("LIVE_MAX_SECONDS"), "LIVE_MAX_SECONDS",
                                      cls.live_max_seconds),
            blobs=BlobSettings.from_config(config),
            job_queue_type=_queue_type("JOB_QUEUE_TYPE", config.get("JOB_QUEUE_TYPE")),
            rpc_queue_type=_queue_type("RPC_QUEUE_TYPE", config.get("RPC_QUEUE_TYPE")),
            job_delivery_limit=positive_int(
                config.get("JOB_DELIVERY_LIMIT"), "JOB_DELIVERY_LIMIT", cls.job_delivery_limit),
            metrics_address=parse_metrics_address(config.get("METRICS_ADDRESS")),
            **_webhook_settings(config),
        )


QUEUE_TYPES = ("classic", "quorum")


def _queue_type(name, value):
    queue_type = str(value or "classic").strip().lower()
    if queue_type not in QUEUE_TYPES:
        raise ValueError("{} must be one of {}, not {!r}".format(
            name, ", ".join(QUEUE_TYPES), value))
    return queue_type


def _webhook_settings(config):
    delays = tuple(float(delay) for delay in as_list(
        config.get("WEBHOOK_RETRY_DELAYS"), Settings.webhook_retry_delays))
    timeout = float(config.get("WEBHOOK_TIMEOUT") or Settings.webhook_timeout)
    if any(delay <= 0 for delay in delays) or timeout <= 0:
        raise ValueError("WEBHOOK_RETRY_DELAYS and WEBHOOK_TIMEOUT must be positive")
    return {
        "webhook_retry_delays": delays,
        "webhook_timeout": timeout,
        "webhook_secret": str(config.get("WEBHOOK_SECRET") or ""),
        "webhook_allow_private": as_bool(config.get("WEBHOOK_ALLOW_PRIVATE"), "WEBHOOK_ALLOW_PRIVATE"),
    }


def default_db_url(storage_root):
    return "sqlite:///" + os.path.join(os.path.abspath(storage_root), "catalog.sqlite3")


def parse_metrics_address(value):
    """``host:port`` -> ``(host, port)``; empty -> None (no exporter).

    Port 0 binds a free port (logged at start-up): handy for tests and for
    several processes on one host that are discovered rather than configured.
    """
    text = str(value or "").strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("METRICS_ADDRESS must be host:port, not {!r}".format(text))
    return (host.strip("[]") or "0.0.0.0", int(port))
