"""Serverless-style capacity on one machine: imaging processes follow the job queue.

``python -m imagepipe scale`` supervises ``nameko run --config config.yaml
services.imaging`` processes -- the same processes an operator starts by
hand -- and keeps their number between ``SCALE_MIN`` and ``SCALE_MAX`` from
what the job queue says:

- ``settings``: ``ScalingSettings`` from config.yaml (``SCALE_*``);
- ``policy``: the decision, a pure function of observations and time
  (unit-tested without processes or a broker);
- ``probe``: reads the job queue (AMQP passive declares; optionally the
  management API for unacknowledged jobs);
- ``supervisor``: starts, stops (SIGTERM, then SIGKILL after the grace
  period), replaces and reaps the imaging processes, none of them outliving
  the scaler;
- ``scaler``: the loop that ties them together, logs each decision with its
  reason and exports Prometheus metrics.

Kubernetes does the same with KEDA (deploy/kubernetes/); this package is for
one machine or a VM without an orchestrator.
"""
