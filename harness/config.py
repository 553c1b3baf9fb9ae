"""The repository's config.yaml, read as ``nameko run`` reads it."""
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_config(path=REPO_ROOT / "config.yaml"):
    """config.yaml with nameko's YAML rules (``${VAR:default}``, ``!raw_env_var``)."""
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    with open(path) as config_file:
        return yaml.safe_load(config_file)
