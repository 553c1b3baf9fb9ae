"""deploy/kubernetes: valid against the Kubernetes and KEDA schemas, and saying what the code does.

There is no cluster here.  Each overlay is rendered with ``kubectl kustomize``
(kustomize built into kubectl), every object validated offline against the
Kubernetes OpenAPI schemas (``kubernetes-validate``, strict: unknown fields
are errors) and the KEDA objects against KEDA's own CRD schemas (unknown
fields are errors too, as with ``kubectl apply --validate=strict``).

KEDA's schemas live outside the repository: ``$KEDA_SCHEMAS`` or
``../shared/schemas/keda`` beside it.  They are required in CI (``CI=true``):
missing there, these tests fail; elsewhere they are skipped with the reason.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from imagepipe.scaling.settings import ScalingSettings, job_deadline
from imagepipe.settings import Settings, parse_metrics_address
from services import topology
from services.extensions.health import HEALTH_PATH
from tests.helpers import REPO_ROOT, load_config, running_in_ci

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = ["embedded", "scale"]
# the oldest Kubernetes KEDA 2.15+ supports, and the newest the validator knows
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
KEDA_KINDS = {"ScaledObject": "keda.sh_scaledobjects.yaml",
              "TriggerAuthentication": "keda.sh_triggerauthentications.yaml"}
SERVICES = {"gateway": "services.gateway", "imaging": "services.imaging",
            "storage": "services.storage", "webhooks": "services.webhooks"}
# S3 credentials reach boto3 through its standard chain, not config.yaml
BOTO3_CHAIN = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


# -- rendering and schemas ------------------------------------------------------

def render(directory):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (kustomize is built in) is needed to render {}; it is part of this "
                    "project's machine image, or install it from your distribution".format(directory))
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


_rendered = {}


def overlay(name):
    if name not in _rendered:
        _rendered[name] = render(KUBERNETES / "overlays" / name)
    return _rendered[name]


def secrets_example():
    return [doc for doc in yaml.safe_load_all((KUBERNETES / "secret.example.yaml").read_text()) if doc]


def find(docs, kind, name):
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, (kind, name, [(d["kind"], d["metadata"]["name"]) for d in docs])
    return matches[0]


def container(docs, name):
    containers = find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env(docs, name):
    """The container's environment as config.yaml will see it (ConfigMap, then env)."""
    values = {}
    spec = container(docs, name)
    for source in spec.get("envFrom", []):
        values.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in spec.get("env", []):
        values[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return values


def keda_schema_dir():
    return Path(os.environ.get("KEDA_SCHEMAS") or REPO_ROOT.parent / "shared" / "schemas" / "keda")


@pytest.fixture(scope="module")
def keda_schemas():
    folder = keda_schema_dir()
    missing = [name for name in KEDA_KINDS.values() if not (folder / name).is_file()]
    if missing:
        message = ("KEDA CRD schemas not found in {} (missing {}): set KEDA_SCHEMAS to a folder with "
                   "{}, or put them in ../shared/schemas/keda beside the repository".format(
                       folder, ", ".join(missing), " and ".join(KEDA_KINDS.values())))
        if running_in_ci():
            pytest.fail(message + " -- required in CI", pytrace=False)
        pytest.skip(message)
    schemas = {}
    for kind, filename in KEDA_KINDS.items():
        crd = yaml.safe_load((folder / filename).read_text())
        version, = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
        schemas[kind] = version["schema"]["openAPIV3Schema"]
    return schemas


def unknown_fields(document, schema, path="$"):
    """Paths of fields the schema does not declare (what the API server would prune or refuse)."""
    found = []
    if isinstance(document, dict) and "properties" in schema:
        open_ended = schema.get("additionalProperties") or schema.get(
            "x-kubernetes-preserve-unknown-fields")
        for key, value in document.items():
            if key in schema["properties"]:
                found += unknown_fields(value, schema["properties"][key], "{}.{}".format(path, key))
            elif not open_ended:
                found.append("{}.{}".format(path, key))
    elif isinstance(document, list) and "items" in schema:
        for index, item in enumerate(document):
            found += unknown_fields(item, schema["items"], "{}[{}]".format(path, index))
    return found


def validate_keda(document, schemas):
    schema = schemas[document["kind"]]
    jsonschema.validate(document, schema)
    assert unknown_fields(document, schema) == [], document["kind"]


# -- schemas ---------------------------------------------------------------------

@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_kubernetes(name, version):
    docs = overlay(name) + secrets_example()
    for doc in docs:
        if doc["kind"] not in KEDA_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)
    kinds = {doc["kind"] for doc in overlay(name)}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", *KEDA_KINDS} <= kinds


@pytest.mark.parametrize("name", OVERLAYS)
def test_keda_objects_are_valid_against_kedas_crds(name, keda_schemas):
    keda_docs = [doc for doc in overlay(name) if doc["kind"] in KEDA_KINDS]
    assert sorted(doc["kind"] for doc in keda_docs) == sorted(KEDA_KINDS)
    for doc in keda_docs:
        validate_keda(doc, keda_schemas)


def test_the_keda_validation_refuses_mistakes(keda_schemas):
    scaled = dict(find(overlay("embedded"), "ScaledObject", "imaging"))
    scaled["spec"] = dict(scaled["spec"], minReplicaCont=0)  # a typo
    with pytest.raises(AssertionError):
        validate_keda(scaled, keda_schemas)
    wrong_type = dict(scaled, spec=dict(scaled["spec"], minReplicaCount="zero"))
    with pytest.raises(jsonschema.ValidationError):
        validate_keda(wrong_type, keda_schemas)


def test_the_kubernetes_validation_refuses_mistakes():
    deployment = dict(find(overlay("embedded"), "Deployment", "gateway"))
    deployment["spec"] = dict(deployment["spec"], replicaz=2)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# -- the manifests say what the code does -------------------------------------------

@pytest.mark.parametrize("name", OVERLAYS)
def test_keda_counts_the_job_queue_its_retries_and_jobs_in_flight(name):
    docs = overlay(name)
    scaled = find(docs, "ScaledObject", "imaging")
    trigger, = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "rabbitmq"
    # over AMQP KEDA counts only ready messages: prefetched jobs would be invisible
    assert meta["protocol"] == "http" and meta["mode"] == "QueueLength"
    assert meta.get("excludeUnacknowledged", "false") == "false"
    assert meta["useRegex"] == "true" and meta["operation"] == "sum"
    pattern = re.compile(meta["queueName"])
    config = load_config()
    retry_delays = Settings.from_config(config).job_retry_delays + (0.5, 120)
    counted = [topology.JOB_QUEUE] + [topology.job_retry_queue(delay, config).name
                                      for delay in retry_delays]
    assert all(pattern.fullmatch(queue) for queue in counted), counted
    for other in (topology.DEAD_LETTER_QUEUE, topology.DELIVERY_QUEUE,
                  topology.delivery_retry_queue(5, config).name, "rpc-imaging"):
        assert not pattern.fullmatch(other), other
    # min 0, one pod per MAX_WORKERS jobs: the same count as the local scaler's
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["scaleTargetRef"]["name"] == "imaging"
    assert "replicas" not in find(docs, "Deployment", "imaging")["spec"]  # KEDA owns it
    jobs_per_pod = env(docs, "imaging")["MAX_WORKERS"]
    assert meta["value"] == jobs_per_pod == str(ScalingSettings.from_config(config).jobs_per_process)
    # credentials only through the TriggerAuthentication and a Secret
    assert not {"host", "hostFromEnv", "username", "password"} & set(meta)
    auth = find(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    ref, = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host"
    secret = find(secrets_example(), "Secret", ref["name"])
    assert secret["stringData"][ref["key"]].startswith("http://")


def probe_port(spec, probe):
    port = spec[probe]["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in spec["ports"] if p["name"] == port)


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_hit_the_health_routes_the_services_serve(name):
    from services.gateway import GatewayService

    docs = overlay(name)
    gateway_route = next(iter(GatewayService.health.nameko_entrypoints))
    assert gateway_route.method == "GET"
    gateway = container(docs, "gateway")
    web_port = int(env(docs, "gateway")["WEB_SERVER_ADDRESS"].rsplit(":", 1)[1])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert gateway[probe]["httpGet"]["path"] == gateway_route.url
        assert probe_port(gateway, probe) == web_port
    for service in ("imaging", "storage", "webhooks"):
        spec = container(docs, service)
        metrics_host, metrics_port = parse_metrics_address(env(docs, service)["METRICS_ADDRESS"])
        assert metrics_host == "0.0.0.0"  # the kubelet probes the pod's address
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert spec[probe]["httpGet"]["path"] == HEALTH_PATH
            assert probe_port(spec, probe) == metrics_port
        annotations = find(docs, "Deployment", service)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(metrics_port)
        assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_service_runs_its_module_with_settings_config_yaml_knows(name):
    docs = overlay(name)
    known = set(re.findall(r"\$\{(\w+):", (REPO_ROOT / "config.yaml").read_text()))
    for service, module in SERVICES.items():
        spec = container(docs, service)
        assert spec["command"] == ["nameko", "run", "--config", "config.yaml", module]
        assert (REPO_ROOT / (module.replace(".", "/") + ".py")).exists()
        assert set(env(docs, service)) - BOTO3_CHAIN <= known, service
        resources = spec["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
        assert spec["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("name", OVERLAYS)
def test_grace_periods_cover_a_job_and_the_shutdown(name):
    docs = overlay(name)
    settings = Settings.from_config(dict(load_config(), **env(docs, "imaging")))
    imaging = find(docs, "Deployment", "imaging")["spec"]["template"]["spec"]
    assert imaging["terminationGracePeriodSeconds"] >= job_deadline(settings)
    for service in ("gateway", "storage", "webhooks"):
        grace = find(docs, "Deployment", service)["spec"]["template"]["spec"]
        # RPC_TIMEOUT-bound calls plus the ~4 s measured shutdown
        assert grace["terminationGracePeriodSeconds"] >= 2 * settings.rpc_timeout + 10, service


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_deployment_has_a_disruption_budget_that_cannot_block_a_drain(name):
    docs = overlay(name)
    budgets = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    for deployment in (doc for doc in docs if doc["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        budget, = [b for b in budgets
                   if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        replicas = deployment["spec"].get("replicas")
        if "minAvailable" in budget["spec"]:
            assert replicas is not None and budget["spec"]["minAvailable"] < replicas, deployment
        else:
            assert budget["spec"]["maxUnavailable"] >= 1


def test_embedded_storage_is_one_pod_on_a_persistent_volume():
    docs = overlay("embedded")
    storage = find(docs, "Deployment", "storage")
    assert storage["spec"]["replicas"] == 1 and storage["spec"]["strategy"]["type"] == "Recreate"
    pod = storage["spec"]["template"]["spec"]
    root = env(docs, "storage")["STORAGE_ROOT"]
    mount, = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == root]
    volume, = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not env(docs, "storage").get("STORAGE_DB") and not env(docs, "storage").get("BLOB_STORE")


def test_scale_storage_keeps_nothing_local():
    docs = overlay("scale")
    storage_env = env(docs, "storage")
    assert find(docs, "Deployment", "storage")["spec"]["replicas"] >= 2
    assert storage_env["STORAGE_DB"] == {"secretKeyRef": {"name": "imagepipe-postgres", "key": "url"}}
    blobs = Settings.from_config(storage_env).blobs
    assert blobs.bucket and storage_env["BLOB_STORE"].startswith("s3://")
    assert not any(doc["kind"] == "PersistentVolumeClaim" for doc in docs)
    assert storage_env["JOB_QUEUE_TYPE"] == storage_env["RPC_QUEUE_TYPE"] == "quorum"


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_secret_is_committed(name):
    docs = overlay(name)
    assert not any(doc["kind"] == "Secret" for doc in docs)
    text = yaml.safe_dump_all(docs)
    assert "guest" not in text and "password" not in text.lower().replace("passwordfromenv", "")
    for doc in secrets_example():
        assert all(value.isupper() or "USER:PASSWORD" in value or value == "CHANGE-ME"
                   for value in doc["stringData"].values()), doc["metadata"]["name"]
