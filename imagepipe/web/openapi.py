"""The OpenAPI 3.1 description of the HTTP API (``imagepipe/web/openapi.yaml``).

One file is the source of truth: the gateway serves it at ``/openapi.json``
and the tests validate real responses against it.
"""
import copy
from functools import lru_cache
from pathlib import Path

import yaml

SPEC_PATH = Path(__file__).with_name("openapi.yaml")


@lru_cache(maxsize=1)
def _load():
    with open(SPEC_PATH) as spec_file:
        return yaml.safe_load(spec_file)


def openapi_spec(public_url=""):
    """The spec as a dict; with a PUBLIC_URL it names that server."""
    spec = copy.deepcopy(_load())
    if public_url:
        spec["servers"] = [{"url": public_url}]
    return spec
