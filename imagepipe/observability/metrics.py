"""Prometheus metrics of the pipeline: definitions and the code that records them.

Every metric lives in ``prometheus_client``'s default registry and is defined
once, when this module is first imported -- so when gateway, imaging and
storage run in one process (``make run``, the test runner) they share one set
of metrics and one ``/metrics`` answer shows all of them, and a second
container in the same process registers nothing twice.  The catalog gauges
(``STORED``) query the database, so they are registered only while a storage
container is running.

Nothing here knows nameko: ``services.extensions.observability`` decides when
to call these functions and where the metrics are served.
"""
import logging
import threading
import time

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from imagepipe.records import FAILED, FINISHED

log = logging.getLogger(__name__)

NAMESPACE = "imagepipe"

# Rendering one preset of a photo takes milliseconds (thumb) to seconds
# (large presets of 50 MP images); a whole job adds decode and transfers.
RENDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# RPC calls and HTTP requests are mostly milliseconds; uploads carry megabytes.
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

UPLOADS_ACCEPTED = Counter(
    "uploads_accepted", "Uploads answered 202 by the gateway.", namespace=NAMESPACE)
UPLOADS_REJECTED = Counter(
    "uploads_rejected", "Uploads refused by the gateway, by error code.",
    ["reason"], namespace=NAMESPACE)

RENDER_SECONDS = Histogram(
    "render_seconds", "Time to render one preset in a render worker "
    "(resize, colour conversion, encode; the shared decode is excluded).",
    ["preset"], namespace=NAMESPACE, buckets=RENDER_BUCKETS)
JOB_SECONDS = Histogram(
    "job_seconds", "Time of one imaging job that finished the image, by outcome.",
    ["outcome"], namespace=NAMESPACE, buckets=RENDER_BUCKETS)
JOBS_FINISHED = Counter(
    "jobs_finished", "Imaging jobs that finished an image, by outcome (done/failed).",
    ["outcome"], namespace=NAMESPACE)
JOB_FAILURES = Counter(
    "job_failures", "Imaging job attempts that raised (transient or permanent).",
    ["kind"], namespace=NAMESPACE)
JOB_RETRIES = Counter(
    "job_retries", "Failed imaging jobs scheduled for another attempt.", namespace=NAMESPACE)
JOB_DEAD_LETTERS = Counter(
    "job_dead_letters", "Imaging jobs parked in the dead-letter queue.", namespace=NAMESPACE)

BLOB_WRITES = Counter(
    "storage_blob_writes", "Blobs written by storage, by kind (original/variant).",
    ["kind"], namespace=NAMESPACE)
BLOB_WRITTEN_BYTES = Counter(
    "storage_written_bytes", "Bytes written by storage, by kind (original/variant).",
    ["kind"], namespace=NAMESPACE)

WORKER_SECONDS = Histogram(
    "worker_seconds", "Time each service spends on one call of an entrypoint "
    "(RPC method, HTTP route, event handler), by outcome (ok/error).",
    ["service", "entrypoint", "outcome"], namespace=NAMESPACE, buckets=CALL_BUCKETS)
RPC_CLIENT_SECONDS = Histogram(
    "rpc_client_seconds", "Round trip of an RPC call as its caller sees it.",
    ["method"], namespace=NAMESPACE, buckets=CALL_BUCKETS)



def upload_accepted():
    UPLOADS_ACCEPTED.inc()


def upload_rejected(reason):
    UPLOADS_REJECTED.labels(reason).inc()


def job_finished(outcome):
    """Record an imaging outcome (``imagepipe.rendering.job.process_image``).

    Only jobs that finished the image count; a redelivered job that found it
    already finished is not a second completion.
    """
    for preset, seconds in outcome.get("render_seconds", {}).items():
        RENDER_SECONDS.labels(preset).observe(seconds)
    if outcome.get("changed") and outcome.get("status") in FINISHED:
        JOBS_FINISHED.labels(outcome["status"]).inc()
        JOB_SECONDS.labels(outcome["status"]).observe(outcome.get("seconds", 0.0))


def job_attempt_failed(permanent):
    JOB_FAILURES.labels("permanent" if permanent else "transient").inc()


def job_retried():
    JOB_RETRIES.inc()


def job_dead_lettered():
    JOB_DEAD_LETTERS.inc()


def job_given_up():
    """A job out of retries marked its image failed: a finished job too."""
    JOBS_FINISHED.labels(FAILED).inc()


def worker_finished(service, entrypoint, seconds, failed):
    WORKER_SECONDS.labels(service, entrypoint, "error" if failed else "ok").observe(seconds)


def rpc_call_finished(method, seconds):
    RPC_CLIENT_SECONDS.labels(method).observe(seconds)


class MeteredBlobStore:
    """A blob store that counts and logs what it writes.

    Wraps any ``imagepipe.storage.blobs.BlobStore`` (files or S3): keys start with the kind
    (``originals/…``, ``variants/…``), which becomes the metric label, and
    the log line names the key, so it carries the image id and preset.
    """

    def __init__(self, blobs):
        self._blobs = blobs

    def put(self, key, data, *args, **kwargs):
        started = time.perf_counter()
        self._blobs.put(key, data, *args, **kwargs)
        self._written(key, len(data), time.perf_counter() - started)

    def promote(self, source, target, content_type, sha256, size=None):
        """A blob written by another service under a grant, checked and moved into place."""
        started = time.perf_counter()
        self._blobs.promote(source, target, content_type, sha256, size)
        self._written(target, size or 0, time.perf_counter() - started)

    @staticmethod
    def _written(key, size, seconds):
        kind = blob_kind(key)
        BLOB_WRITES.labels(kind).inc()
        BLOB_WRITTEN_BYTES.labels(kind).inc(size)
        log.info("stored %s (%d bytes) in %.3f s", key, size, seconds)

    def __getattr__(self, name):
        return getattr(self._blobs, name)


def blob_kind(key):
    prefix = key.split("/", 1)[0]
    return {"originals": "original", "variants": "variant"}.get(prefix, prefix)


class CatalogCollector:
    """Gauges of what storage holds, read from its catalog at scrape time.

    Storage containers ``attach`` their catalog when they start and
    ``detach`` it when they stop; the collector is in the registry while any
    catalog is attached.  Catalogs are keyed by database URL, so two
    containers on one database are counted once; a process without storage
    reports none of these gauges.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._catalogs = {}

    def attach(self, catalog):
        with self._lock:
            if not self._catalogs:
                REGISTRY.register(self)
            self._catalogs.setdefault(_catalog_key(catalog), []).append(catalog)

    def detach(self, catalog):
        with self._lock:
            attached = self._catalogs.get(_catalog_key(catalog), [])
            if catalog in attached:
                attached.remove(catalog)
            if not attached and self._catalogs.pop(_catalog_key(catalog), None) is not None:
                if not self._catalogs:
                    REGISTRY.unregister(self)

    def collect(self):
        with self._lock:
            catalogs = [attached[0] for attached in self._catalogs.values()]
        if not catalogs:
            return
        images = GaugeMetricFamily(
            NAMESPACE + "_stored_images", "Images in the catalog, by status.", labels=["status"])
        stored_bytes = GaugeMetricFamily(
            NAMESPACE + "_stored_bytes", "Bytes of stored blobs per the catalog, by kind.",
            labels=["kind"])
        totals = {}
        for catalog in catalogs:
            try:
                _add_totals(totals, catalog.stored_totals())
            except Exception:  # a scrape must answer even while the database is away
                log.warning("cannot read catalog totals for metrics", exc_info=True)
                return
        for status, count in sorted(totals.get("images", {}).items()):
            images.add_metric([status], count)
        for kind, size in sorted(totals.get("bytes", {}).items()):
            stored_bytes.add_metric([kind], size)
        yield images
        yield stored_bytes

    def describe(self):
        return []  # collect() queries the database; never at registration


def _catalog_key(catalog):
    return str(catalog.engine.url)


def _add_totals(totals, more):
    for section, values in more.items():
        target = totals.setdefault(section, {})
        for key, value in values.items():
            target[key] = target.get(key, 0) + value


STORED = CatalogCollector()
