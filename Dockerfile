# One image for every service; the compose file (or a Kubernetes manifest)
# picks the service per container.  Runtime dependencies only: the hashed pins
# of requirements.txt (test tools live in requirements-dev.txt, never here).
#
# python:3.11.14-slim, pinned by digest (the multi-arch index: amd64 and arm64).
# Move it with the Python version: docker buildx imagetools inspect python:3.11-slim
ARG PYTHON_IMAGE=python:3.11.14-slim@sha256:c8271b1f627d0068857dce5b53e14a9558603b527e46f1f901722f935b786a39

FROM ${PYTHON_IMAGE} AS dependencies
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE}
# PYTHONWARNINGS: the two deprecation warnings nameko's CLI triggers at every
# start-up (pkg_resources, eventlet; see README "Deprecated upstream"), as in the Makefile.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONWARNINGS="ignore:pkg_resources is deprecated as an API:UserWarning,ignore::Warning:nameko.cli.commands" \
    STORAGE_ROOT=/data \
    METRICS_ADDRESS=0.0.0.0:9100
COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /app
COPY config.yaml .
COPY imagepipe ./imagepipe
COPY services ./services

# A numeric user, so Kubernetes' runAsNonRoot can verify it is not root.
RUN useradd --system --uid 10001 --gid 0 --home-dir /app --no-create-home pipeline \
    && mkdir -p /data && chown 10001:0 /data
USER 10001:0

EXPOSE 8000 9100
# Every service exports /health on METRICS_ADDRESS (9100); the gateway also
# answers on 8000 (the compose file checks that one for it).
HEALTHCHECK --interval=15s --timeout=6s --start-period=30s --retries=3 \
    CMD ["python", "-m", "imagepipe.healthcheck"]
# Overridden per service in docker-compose.yml.
CMD ["nameko", "run", "--config", "config.yaml", "services.gateway", "services.imaging", "services.storage", "services.webhooks"]
