"""Typed view of ``config.yaml``.

nameko hands every extension the raw config mapping; the services read it once
through :meth:`Settings.from_config` so that defaults and validation live in
one place and misconfiguration fails at start-up, not on the first upload.
"""
import os
from dataclasses import dataclass, field

from imagepipe.configvalues import PortRanges, as_bool, as_list, as_ports, positive, positive_int
from imagepipe.rendering.presets import DEFAULT_FORMATS, DEFAULT_PRESETS, presets_from_config
from imagepipe.rendering.structure import DecodeLimits
from imagepipe.storage.blobs import BlobSettings
from imagepipe.storage.limits import StorageLimits
from imagepipe.web.keys import parse_api_keys
from imagepipe.web.limits import ClientLimits


@dataclass(frozen=True)
class Settings:
    amqp_uri: str = "amqp://guest:guest@localhost:5672/"
    storage_root: str = "./data"
    storage_db: str = ""
    public_url: str = ""
    presets: tuple = ()
    allowed_formats: tuple = DEFAULT_FORMATS
    max_upload_bytes: int = 25 * 1024 * 1024
    # store originals as uploaded (EXIF, comments, trailing bytes and all)
    keep_metadata: bool = False
    max_pixels: int = 50_000_000
    rpc_timeout: float = 5.0
    job_retry_delays: tuple = (1.0, 5.0, 30.0)
    job_max_attempts: int = 5
    stalled_after: float = 300.0
    render_workers: int = 2
    render_timeout: float = 60.0
    render_memory_mb: int = 1024
    render_nice: int = 10
    # render time budget: seconds per megapixel (width x height x frames),
    # never below render_seconds_min nor above render_timeout
    render_seconds_per_megapixel: float = 0.25
    render_seconds_min: float = 5.0
    # render worker sandbox: auto (what the kernel allows), require, off
    render_sandbox: str = "auto"
    # decoder work caps checked on the raw bytes before any decoder runs
    decode_limits: DecodeLimits = DecodeLimits()
    # imagepipe.web.keys.ApiKey entries; each key a tenant unless key_tenants is off
    # animated presets: above any cap the renditions show the first frame
    # (imagepipe.rendering.animation.Limits, as a dict for the render workers)
    animation_limits: dict = field(default_factory=lambda: {
        "max_frames": 300, "max_seconds": 60.0, "max_pixels": 25_000_000})
    api_keys: tuple = field(default=(), repr=False)
    key_tenants: bool = True
    # what one client may cost the gateway (imagepipe.web.limits)
    client_limits: ClientLimits = ClientLimits()
    # live status streams (GET /images/<id>/events)
    live_recheck_interval: float = 15.0
    live_max_seconds: float = 300.0
    # where blobs live: files under storage_root, or S3 (BLOB_STORE, S3_*)
    blobs: BlobSettings = BlobSettings()
    # how the gateway and imaging reach them: auto, direct (under grants) or rpc
    blob_access: str = "auto"
    storage_limits: StorageLimits = StorageLimits()
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
    # ports a callback_url may name (None: any), and deliveries at once per host and process
    webhook_allowed_ports: PortRanges = PortRanges(((80, 80), (443, 443)))
    webhook_max_per_host: int = 2

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
            keep_metadata=as_bool(config.get("KEEP_METADATA"), "KEEP_METADATA", cls.keep_metadata),
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
            api_keys=parse_api_keys(config.get("API_KEYS")),
            key_tenants=as_bool(config.get("KEY_TENANTS"), "KEY_TENANTS", cls.key_tenants),
            client_limits=ClientLimits.from_config(config),
            **_render_hardening(config),
            animation_limits=_animation_limits(config),
            live_recheck_interval=positive(config.get("LIVE_RECHECK_INTERVAL"), "LIVE_RECHECK_INTERVAL",
                                           cls.live_recheck_interval),
            live_max_seconds=positive(config.get("LIVE_MAX_SECONDS"), "LIVE_MAX_SECONDS",
                                      cls.live_max_seconds),
            blobs=BlobSettings.from_config(config),
            blob_access=_choice("BLOB_ACCESS", config.get("BLOB_ACCESS"), ("auto", "direct", "rpc")),
            storage_limits=StorageLimits(
                min_free_bytes=int(config.get("MIN_FREE_DISK_BYTES") or 0),
                tenant_quota_bytes=int(config.get("TENANT_QUOTA_BYTES") or 0),
                staging_max_age=positive(config.get("STAGING_MAX_AGE"), "STAGING_MAX_AGE",
                                         StorageLimits.staging_max_age)),
            job_queue_type=_queue_type("JOB_QUEUE_TYPE", config.get("JOB_QUEUE_TYPE")),
            rpc_queue_type=_queue_type("RPC_QUEUE_TYPE", config.get("RPC_QUEUE_TYPE")),
            job_delivery_limit=positive_int(
                config.get("JOB_DELIVERY_LIMIT"), "JOB_DELIVERY_LIMIT", cls.job_delivery_limit),
            metrics_address=parse_metrics_address(config.get("METRICS_ADDRESS")),
            **_webhook_settings(config),
        )


def _animation_limits(config):
    defaults = Settings().animation_limits
    return {
        "max_frames": positive_int(config.get("ANIMATION_MAX_FRAMES"), "ANIMATION_MAX_FRAMES",
                                   defaults["max_frames"]),
        "max_seconds": positive(config.get("ANIMATION_MAX_SECONDS"), "ANIMATION_MAX_SECONDS",
                                defaults["max_seconds"]),
        "max_pixels": positive_int(config.get("ANIMATION_MAX_PIXELS"), "ANIMATION_MAX_PIXELS",
                                   defaults["max_pixels"]),
    }


QUEUE_TYPES = ("classic", "quorum")


def _queue_type(name, value):
    return _choice(name, value, QUEUE_TYPES)


def _choice(name, value, choices):
    """``value`` (lower-cased) if it is one of ``choices``; empty means the first."""
    chosen = str(value or choices[0]).strip().lower()
    if chosen not in choices:
        raise ValueError("{} must be one of {}, not {!r}".format(name, ", ".join(choices), value))
    return chosen


RENDER_SANDBOX_MODES = ("auto", "require", "off")


def _render_hardening(config):
    sandbox = _choice("RENDER_SANDBOX", config.get("RENDER_SANDBOX"), RENDER_SANDBOX_MODES)
    defaults = DecodeLimits()
    return {
        "render_seconds_per_megapixel": positive(
            config.get("RENDER_SECONDS_PER_MEGAPIXEL"), "RENDER_SECONDS_PER_MEGAPIXEL",
            Settings.render_seconds_per_megapixel),
        "render_seconds_min": positive(
            config.get("RENDER_SECONDS_MIN"), "RENDER_SECONDS_MIN", Settings.render_seconds_min),
        "render_sandbox": sandbox,
        "decode_limits": DecodeLimits(**{
            field: positive_int(config.get(field.upper()), field.upper(), getattr(defaults, field))
            for field in ("jpeg_max_scans", "jpeg_max_segments", "png_max_chunks", "gif_max_blocks")
        }),
    }


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
        "webhook_allowed_ports": as_ports(config.get("WEBHOOK_ALLOWED_PORTS"), "WEBHOOK_ALLOWED_PORTS",
                                          Settings.webhook_allowed_ports),
        "webhook_max_per_host": positive_int(config.get("WEBHOOK_MAX_PER_HOST"), "WEBHOOK_MAX_PER_HOST",
                                             Settings.webhook_max_per_host),
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
