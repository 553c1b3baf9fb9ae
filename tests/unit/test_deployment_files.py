"""docker-compose.yml, the Dockerfile and config.yaml agree with each other."""
import re

import yaml

from tests.compose import compose_file as compose
from tests.helpers import REPO_ROOT, load_config

SERVICE_MODULES = {"gateway": "services.gateway", "imaging": "services.imaging",
                   "storage": "services.storage", "webhooks": "services.webhooks"}
THIRD_PARTY_SERVICES = {"rabbitmq", "minio"}
# S3 credentials reach boto3 through its standard chain, not config.yaml.
BOTO3_CHAIN = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_each_service_runs_its_module_with_the_repo_config():
    services = compose()["services"]
    for name, module in SERVICE_MODULES.items():
        command = services[name]["command"]
        assert command[:4] == ["nameko", "run", "--config", "config.yaml"], name
        assert command[4:] == [module], name
        assert (REPO_ROOT / (module.replace(".", "/") + ".py")).exists()


def test_environment_names_exist_in_config_yaml():
    config_text = (REPO_ROOT / "config.yaml").read_text()
    known = set(re.findall(r"\$\{(\w+):", config_text))
    for name, service in compose()["services"].items():
        if name in THIRD_PARTY_SERVICES or service.get("image", "").startswith("rabbitmq"):
            continue
        for variable in service["environment"]:
            assert variable in known or variable in BOTO3_CHAIN, (name, variable)


def test_imaging_scales_and_storage_keeps_its_data():
    services = compose()["services"]
    assert "container_name" not in services["imaging"]
    assert "ports" not in services["imaging"]
    assert any(volume.startswith("storage-data:") for volume in services["storage"]["volumes"])
    assert services["storage"]["environment"]["STORAGE_ROOT"] == "/data"
    assert "storage-data" in compose()["volumes"]


def test_broker_has_healthcheck_dashboard_and_no_default_credentials():
    services = compose()["services"]
    rabbit = services["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:3.13.7-management@sha256:")
    assert rabbit["healthcheck"]["test"]
    assert any("15672" in port for port in rabbit["ports"])
    assert not any(str(port).split(":")[-1] == "5672" for port in rabbit["ports"])
    assert "guest" not in yaml.safe_dump(services)
    for name in SERVICE_MODULES:
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


def test_gateway_publishes_the_configured_port():
    gateway = compose()["services"]["gateway"]
    assert gateway["environment"]["WEB_SERVER_ADDRESS"].endswith(":8000")
    assert any(port.endswith(":8000") for port in gateway["ports"])


def test_config_yaml_has_the_documented_defaults(monkeypatch):
    for variable in ("AMQP_URI", "WEB_SERVER_ADDRESS", "STORAGE_ROOT"):
        monkeypatch.delenv(variable, raising=False)
    config = load_config()
    assert config["AMQP_URI"] == "amqp://guest:guest@localhost:5672/"
    assert config["WEB_SERVER_ADDRESS"] == "0.0.0.0:8000"
    assert config["STORAGE_ROOT"] == "./data"
    assert set(config["PRESETS"]) == {"thumb", "medium"}


def test_s3_profile_runs_minio_for_storage_without_default_credentials():
    services = compose()["services"]
    minio = services["minio"]
    assert minio["image"].startswith("minio/minio")
    assert minio["profiles"] == ["s3"]
    assert [name for name, service in services.items() if "s3" in service.get("profiles", [])] == ["minio"]
    assert any(volume.startswith("minio-data:") for volume in minio["volumes"])
    assert "minio-data" in compose()["volumes"]
    # credentials only from the environment, refused when empty
    assert minio["environment"] == {"MINIO_ROOT_USER": "${MINIO_ROOT_USER:-}",
                                    "MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD:-}"}
    start = minio["entrypoint"][-1]
    assert 'test -n "$$MINIO_ROOT_PASSWORD"' in start and "exit 1" in start
    assert "minioadmin" not in yaml.safe_dump(compose())
    assert not any(str(port).split(":")[-2:] == ["9000", "9000"] for port in minio["ports"])
    assert minio["healthcheck"]["test"]


def test_storage_reaches_the_profiles_minio():
    storage = compose()["services"]["storage"]
    environment = storage["environment"]
    minio_start = compose()["services"]["minio"]["entrypoint"][-1]
    endpoint = re.fullmatch(r"\$\{S3_ENDPOINT_URL-(http://minio:(\d+))\}", environment["S3_ENDPOINT_URL"])
    assert endpoint and "--address :{}".format(endpoint.group(2)) in minio_start
    assert environment["BLOB_STORE"] is None  # passed through when set: files unless asked
    assert "MINIO_ROOT_USER" in environment["AWS_ACCESS_KEY_ID"]
    assert "MINIO_ROOT_PASSWORD" in environment["AWS_SECRET_ACCESS_KEY"]
    assert storage["depends_on"]["minio"] == {"condition": "service_healthy", "required": False}
    # the compose values parse as settings once interpolated
    from imagepipe.settings import Settings

    blobs = Settings.from_config({"BLOB_STORE": "s3://images", "S3_ENDPOINT_URL": endpoint.group(1)}).blobs
    assert (blobs.bucket, blobs.endpoint_url) == ("images", "http://minio:9000")


CLUSTER_NODES = ["rabbit-1", "rabbit-2", "rabbit-3"]
HA_SERVICES = {"gateway-ha": "services.gateway", "imaging-ha": "services.imaging",
               "storage-ha": "services.storage", "webhooks-ha": "services.webhooks"}


def test_cluster_profile_runs_three_clustered_nodes_with_a_shared_cookie():
    services = compose()["services"]
    rabbit_image = services["rabbitmq"]["image"]
    cluster_conf = (REPO_ROOT / "deploy" / "rabbitmq-cluster.conf").read_text()
    # every node gets the cookie from the same variable (yaml here may pre-resolve ${...})
    assert "RABBITMQ_ERLANG_COOKIE: ${RABBITMQ_ERLANG_COOKIE:-}" in (
        REPO_ROOT / "docker-compose.yml").read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in cluster_conf
    for index, name in enumerate(CLUSTER_NODES, start=1):
        node = services[name]
        assert node["profiles"] == ["cluster"]
        assert node["image"] == rabbit_image  # the same pinned image as the single broker
        assert node["hostname"] == name  # node name rabbit@<hostname>, as the config lists it
        assert "cluster_formation.classic_config.nodes.{} = rabbit@{}".format(index, name) in cluster_conf
        assert "./deploy/rabbitmq-cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in node["volumes"]
        assert any(volume.startswith(name + "-data:") for volume in node["volumes"])
        assert "RABBITMQ_ERLANG_COOKIE" in node["environment"]
        assert "RABBITMQ_ERLANG_COOKIE" in " ".join(node["healthcheck"]["test"])
        for credential in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"):
            # the same required variables as the single broker: no default password
            assert node["environment"][credential] == services["rabbitmq"]["environment"][credential]
        # only the first node's dashboard, on the host's loopback; AMQP stays inside
        published = [str(port) for port in node.get("ports", [])]
        # (another host port than the single broker's: both run with --profile cluster)
        assert published == (["127.0.0.1:${CLUSTER_DASHBOARD_PORT:-15673}:15672"] if index == 1 else [])


def test_cluster_profile_services_use_every_node_and_quorum_queues():
    services = compose()["services"]
    config_text = (REPO_ROOT / "config.yaml").read_text()
    for name, module in HA_SERVICES.items():
        service = services[name]
        assert service["profiles"] == ["cluster"]
        assert service["command"] == ["nameko", "run", "--config", "config.yaml", module]
        assert set(service["depends_on"]) == set(CLUSTER_NODES)
        assert all(dep["condition"] == "service_healthy" for dep in service["depends_on"].values())
        env = service["environment"]
        hosts = [uri.split("@", 1)[1] for uri in env["AMQP_URI"].split(";")]
        assert hosts == ["{}:5672/".format(node) for node in CLUSTER_NODES]
        assert env["JOB_QUEUE_TYPE"] == env["RPC_QUEUE_TYPE"] == "quorum"
        for variable in ("JOB_QUEUE_TYPE", "RPC_QUEUE_TYPE"):
            assert "${%s:" % variable in config_text
    assert services["storage-ha"]["environment"]["STORAGE_ROOT"] == "/data"
    assert "container_name" not in services["imaging-ha"] and "ports" not in services["imaging-ha"]
    assert any(port.endswith(":8000") for port in services["gateway-ha"]["ports"])
    volumes = compose()["volumes"]
    assert {"storage-ha-data", *("{}-data".format(node) for node in CLUSTER_NODES)} <= set(volumes)


def test_default_stack_stays_outside_the_cluster_profile():
    services = compose()["services"]
    for name in ("rabbitmq", *SERVICE_MODULES):
        assert "profiles" not in services[name], name
    # nothing the default stack needs may be required only by the cluster profile
    assert "RABBITMQ_ERLANG_COOKIE:?" not in (REPO_ROOT / "docker-compose.yml").read_text()


def test_fail_over_uri_reaches_every_node_with_kombu():
    from kombu import Connection

    uri = compose()["services"]["gateway-ha"]["environment"]["AMQP_URI"]
    connection = Connection(uri.replace("${RABBITMQ_USER:-pipeline}", "pipeline")
                            .replace("${RABBITMQ_PASSWORD:?set RABBITMQ_PASSWORD}", "secret"))
    assert [alternate.split("@")[1] for alternate in connection.alt] == [
        "{}:5672/".format(node) for node in CLUSTER_NODES]
    assert connection.hostname == "rabbit-1"


def test_gateway_and_imaging_see_the_store_read_only_except_its_staging_folder():
    """The claim-check path: they write only staged blobs; storage moves checked ones into place."""
    services = compose()["services"]
    for name in ("gateway", "imaging"):
        volumes = services[name]["volumes"]
        assert {"type": "volume", "source": "storage-data", "target": "/data",
                "read_only": True} in volumes, name
        staging = [volume for volume in volumes if volume["target"] == "/data/staging"]
        assert staging and not staging[0].get("read_only") and staging[0]["volume"] == {
            "subpath": "staging"}, name
        assert services[name]["environment"]["STORAGE_ROOT"] == "/data"
        assert services[name]["depends_on"]["storage"]["condition"] == "service_healthy"
    assert "storage-data:/data" in services["storage"]["volumes"]
    assert "volumes" not in services["webhooks"]
