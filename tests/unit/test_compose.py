"""docker-compose.yml against the Compose specification and as Compose itself resolves it.

Compose v2's own binary (tests/compose.py) runs ``docker compose config`` for
every profile -- no Docker engine needed -- and its embedded JSON schema
validates the file.  Without the binary these tests fail: `make test` installs it.
"""
import copy
import itertools
import re

import jsonschema
import pytest

from tests.compose import compose_file, compose_schema, resolved, run_compose
from tests.helpers import REPO_ROOT

PROFILES = ["s3", "cluster"]
EVERY_PROFILE_SET = [combo for size in range(len(PROFILES) + 1)
                     for combo in itertools.combinations(PROFILES, size)]
PIPELINE = {"gateway", "storage", "imaging", "webhooks",
            "gateway-ha", "storage-ha", "imaging-ha", "webhooks-ha"}
# set by the compose file itself, per service (the rest of config.yaml passes through)
SET_BY_COMPOSE = {"AMQP_URI", "WEB_SERVER_ADDRESS", "STORAGE_ROOT", "METRICS_ADDRESS", "MAX_WORKERS",
                  "S3_ENDPOINT_URL"}
# read only by the scaler (python -m imagepipe scale), which compose does not
# run: it scales imaging with --scale imaging=N
SCALER_PREFIX = "SCALE_"
ENV = {"RABBITMQ_PASSWORD": "secret"}


def schema_errors(document):
    return [error.message for error in jsonschema.Draft7Validator(compose_schema()).iter_errors(document)]


def test_the_file_follows_the_compose_specification():
    document = compose_file()
    assert schema_errors(document) == []
    # the schema is not vacuous: it refuses what Compose would
    broken = copy.deepcopy(document)
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    broken["services"]["imaging"]["stop_grace_period"] = ["10s"]
    assert len(schema_errors(broken)) == 2


@pytest.mark.parametrize("profiles", EVERY_PROFILE_SET, ids=lambda combo: "+".join(combo) or "default")
def test_every_profile_resolves_pinned_healthy_and_without_port_clashes(profiles):
    config = resolved(*profiles, env=ENV)
    assert schema_errors(config) == []
    published = []
    for name, service in config["services"].items():
        assert service.get("healthcheck", {}).get("test"), "{} has no health check".format(name)
        if "build" not in service:  # built here from the digest-pinned Dockerfile, or:
            assert re.search(r"@sha256:[0-9a-f]{64}$", service["image"]), (name, service["image"])
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)  # loopback unless asked
            published.append((port["host_ip"], port["published"], port.get("protocol", "tcp")))
    assert len(published) == len(set(published)), published
    expected = {"rabbitmq", "gateway", "storage", "imaging", "webhooks"}
    if "s3" in profiles:
        expected.add("minio")
    if "cluster" in profiles:
        expected |= {"rabbit-1", "rabbit-2", "rabbit-3", "gateway-ha", "storage-ha", "imaging-ha",
                     "webhooks-ha"}
    assert set(config["services"]) == expected


def pipeline_environments(config):
    return {name: service["environment"] for name, service in config["services"].items()
            if name in PIPELINE}


def test_every_config_yaml_setting_reaches_the_services_from_the_environment():
    config_lines = (REPO_ROOT / "config.yaml").read_text().splitlines()
    settings = {name for line in config_lines if not line.lstrip().startswith("#")
                for name in re.findall(r"\$\{(\w+):", line)}
    passed = set(compose_file()["x-settings"])
    settings = {name for name in settings if not name.startswith(SCALER_PREFIX)}
    assert settings - SET_BY_COMPOSE <= passed, settings - SET_BY_COMPOSE - passed
    assert passed <= settings, passed - settings  # no name config.yaml would ignore

    values = {name: "value-of-" + name for name in passed}
    environments = pipeline_environments(resolved("cluster", env=dict(ENV, **values)))
    for service, environment in environments.items():
        for name in passed - {"JOB_QUEUE_TYPE", "RPC_QUEUE_TYPE"}:
            assert environment.get(name) == values[name], (service, name)
    # unset: no value at all, so config.yaml's default applies (Compose leaves it out)
    for service, environment in pipeline_environments(resolved("cluster", env=ENV)).items():
        assert all(environment.get(name) is None for name in passed - {"JOB_QUEUE_TYPE", "RPC_QUEUE_TYPE"}), service
    # the cluster profile's services run on quorum queues whatever the default stack uses
    assert environments["imaging-ha"]["JOB_QUEUE_TYPE"] == "quorum"
    assert environments["imaging"]["JOB_QUEUE_TYPE"] == values["JOB_QUEUE_TYPE"]


def test_an_env_file_turns_authentication_on_and_the_shell_wins_over_it():
    dotenv = "RABBITMQ_PASSWORD=from-file\nAPI_KEYS=key-one,key-two\nPUBLIC_URL=https://img.example\n"
    environments = pipeline_environments(resolved(dotenv=dotenv))
    assert {env["API_KEYS"] for env in environments.values()} == {"key-one,key-two"}
    assert environments["gateway"]["PUBLIC_URL"] == "https://img.example"
    assert ":from-file@rabbitmq:5672/" in environments["gateway"]["AMQP_URI"]
    shell = resolved(env={"API_KEYS": "from-shell"}, dotenv=dotenv)
    assert shell["services"]["gateway"]["environment"]["API_KEYS"] == "from-shell"


def test_the_gateway_listens_on_the_loopback_unless_told_otherwise():
    (port,) = resolved(env=ENV)["services"]["gateway"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)
    env = dict(ENV, GATEWAY_BIND="0.0.0.0", GATEWAY_PORT="8080")
    (port,) = resolved(env=env)["services"]["gateway"]["ports"]
    assert (port["host_ip"], port["published"]) == ("0.0.0.0", "8080")


def test_health_checks_probe_each_service_where_it_answers():
    services = resolved("cluster", env=ENV)["services"]
    for name in PIPELINE:
        test = services[name]["healthcheck"]["test"]
        port = "8000" if name.startswith("gateway") else "9100"
        assert test == ["CMD", "python", "-m", "imagepipe.healthcheck",
                        "http://127.0.0.1:{}/health".format(port)], name
        if port == "9100":
            assert services[name]["environment"]["METRICS_ADDRESS"] == "0.0.0.0:9100", name


def test_compose_refuses_to_start_without_a_broker_password():
    result = run_compose("config", "--quiet")
    assert result.returncode != 0
    assert "set RABBITMQ_PASSWORD" in result.stderr


def test_the_example_env_file_names_only_what_compose_reads():
    example = (REPO_ROOT / ".env.example").read_text()
    named = set(re.findall(r"(?m)^#? ?([A-Z][A-Z0-9_]+)=", example))
    compose_text = (REPO_ROOT / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{(\w+)", compose_text)) | set(compose_file()["x-settings"])
    assert {"RABBITMQ_PASSWORD", "API_KEYS", "GATEWAY_BIND", "STORAGE_DB", "WEBHOOK_SECRET"} <= named
    assert named <= read, named - read
    assert resolved(dotenv=example)["services"]["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"] == "change-me"
