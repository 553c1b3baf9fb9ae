"""The pipeline's own config.yaml, read as ``nameko run`` reads it.

``${VAR:default}`` takes the environment variable or the default, so the
baselines render the same presets and the message sizes use the same
serializer as the services started with this environment.
"""
from imagepipe.settings import Settings
from tests.helpers import load_config  # nameko's own YAML rules (${VAR:default}, !raw_env_var)


def presets(config=None):
    return Settings.from_config(load_config() if config is None else config).presets


def serializer(config=None):
    return (load_config() if config is None else config).get("serializer") or "json"
