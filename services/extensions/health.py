"""``GET /health`` of a process without a web server (imaging, storage, webhooks).

Served by the process's metrics exporter (``METRICS_ADDRESS``, see
``observability``), for Kubernetes probes and compose healthchecks:
``200 {"status": "ok", "services": {...}}`` when every nameko container in
the process runs and all its AMQP consumers are registered on a live
connection; otherwise ``503 {"error": "service_unavailable", "message":
..., "services": {...}}`` -- while starting, while the broker connection is
gone (the consumers keep reconnecting), and from the moment a container
begins to stop (SIGTERM), so no new work is routed to it.

A container's state comes from nameko's own flags and from the queue
consumers (``FailoverQueueConsumer.consuming``); reading them costs nothing,
so a probe may call as often as it likes.
"""
import json

from nameko.messaging import QueueConsumer

OK = "ok"
HEALTH_PATH = "/health"


def container_state(container):
    """``ok``, or why the container cannot take work: starting, stopping, stopped, ..."""
    if container._died.ready() or container._being_killed:
        return "stopped"
    consumers = [extension for extension in container.extensions
                 if isinstance(extension, QueueConsumer)]
    if any(getattr(consumer, "stopping", False) for consumer in consumers):
        return "stopping"
    if not container.started:
        return "starting"
    for consumer in consumers:
        if not consumer._consumers_ready.ready():
            return "starting"
        if not getattr(consumer, "consuming", True):
            return "broker connection lost"
    return OK


def health(containers):
    """``(HTTP status, JSON body)`` for the containers of this process."""
    states = {container.service_name: container_state(container) for container in containers}
    if states and all(state == OK for state in states.values()):
        return 200, {"status": OK, "services": states}
    problems = ", ".join("{}: {}".format(name, state) for name, state in sorted(states.items())
                         if state != OK) or "no service running"
    return 503, {"error": "service_unavailable", "message": problems, "services": states}


def wsgi_app(containers, fallback):
    """``/health`` from ``containers()``; any other path goes to ``fallback`` (the metrics)."""
    def app(environ, start_response):
        if environ.get("PATH_INFO") != HEALTH_PATH:
            return fallback(environ, start_response)
        status, body = health(containers())
        data = json.dumps(body).encode()
        start_response("{} {}".format(status, "OK" if status == 200 else "Service Unavailable"), [
            ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store")])
        return [data] if environ.get("REQUEST_METHOD") != "HEAD" else []
    return app
