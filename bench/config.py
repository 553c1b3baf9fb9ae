"""The pipeline's own config.yaml, read as ``nameko run`` reads it.

``${VAR:default}`` takes the environment variable or the default, so the
baselines render the same presets and the message sizes use the same
serializer as the services started with this environment.
"""
import os
import re
from pathlib import Path

import yaml

from imagepipe.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
_VARIABLE = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")


def load_config(path=REPO_ROOT / "config.yaml"):
    text = Path(path).read_text()
    return yaml.safe_load(_VARIABLE.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), text))


def presets(config=None):
    return Settings.from_config(load_config() if config is None else config).presets


def serializer(config=None):
    return (load_config() if config is None else config).get("serializer") or "json"
