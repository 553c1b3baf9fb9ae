# One image for every service; the compose file picks the service per container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY config.yaml .
COPY imagepipe ./imagepipe
COPY services ./services

RUN useradd --system --uid 10001 --home /app pipeline \
    && mkdir -p /data && chown pipeline /data
USER pipeline

EXPOSE 8000
# Overridden per service in docker-compose.yml.
CMD ["nameko", "run", "--config", "config.yaml", "services.gateway", "services.imaging", "services.storage", "services.webhooks"]
