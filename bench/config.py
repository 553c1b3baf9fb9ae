"""The pipeline's own config.yaml, read as ``nameko run`` reads it.

``${VAR:default}`` takes the environment variable or the default, so the
baselines render the same presets and the message sizes use the same
serializer as the services started with this environment.
"""
from imagepipe.settings import Settings
from harness.config import load_config


def presets(config=None):
    return Settings.from_config(load_config() if config is None else config).presets


def serializer(config=None):
    return (load_config() if config is None else config).get("serializer") or "json"
