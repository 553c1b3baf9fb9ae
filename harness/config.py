"""The repository's config.yaml, read as ``nameko run`` reads it."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_config(path=REPO_ROOT / "config.yaml"):
    """config.yaml with nameko's YAML rules (``${VAR:default}``, ``!raw_env_var``)."""
    from services.operator import read_config

    return read_config(path)
