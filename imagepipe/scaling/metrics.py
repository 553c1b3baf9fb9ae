"""The scaler's Prometheus metrics, in a registry of its own (served on SCALE_METRICS_ADDRESS)."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

START_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class ScalerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        registry = self.registry
        self.desired = Gauge("imagepipe_scaler_desired_processes",
                             "Imaging processes the scaler wants", registry=registry)
        self.processes = Gauge("imagepipe_scaler_processes",
                               "Imaging processes the scaler runs, by state", ["state"],
                               registry=registry)
        self.queue = Gauge("imagepipe_scaler_queue_messages",
                           "Jobs as last seen by the scaler: ready and unacknowledged in the job "
                           "queue (unacked only with SCALE_MANAGEMENT_URL), waiting in retry queues",
                           ["state"], registry=registry)
        self.consumers = Gauge("imagepipe_scaler_queue_consumers",
                               "Consumers of the job queue", registry=registry)
        self.decisions = Counter("imagepipe_scaler_decisions_total",
                                 "Changes of the process count", ["direction"], registry=registry)
        self.cold_start = Histogram(
            "imagepipe_scaler_cold_start_seconds",
            "From starting a process with none running to a consumer on the job queue",
            buckets=START_BUCKETS, registry=registry)
        self.process_start = Histogram(
            "imagepipe_scaler_process_start_seconds",
            "From starting any imaging process to its consumer on the job queue",
            buckets=START_BUCKETS, registry=registry)
        self.unexpected_exits = Counter("imagepipe_scaler_unexpected_exits_total",
                                        "Imaging processes that died unasked (replaced)",
                                        registry=registry)
        self.probe_failures = Counter("imagepipe_scaler_probe_failures_total",
                                      "Polls of the broker that failed", registry=registry)

    def observed(self, observation):
        self.queue.labels("ready").set(observation.ready)
        self.queue.labels("retrying").set(observation.retrying)
        if observation.unacked is not None:
            self.queue.labels("unacked").set(observation.unacked)
        self.consumers.set(observation.consumers)

    def serve(self, address):
        """Start the HTTP exporter on ``(host, port)``; returns the port bound."""
        server, _thread = start_http_server(address[1], addr=address[0], registry=self.registry)
        return server.server_port
