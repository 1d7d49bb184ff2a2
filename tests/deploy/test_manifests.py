"""The deployment files in deploy/ are valid and agree with the code.

- compose.yaml against the Compose Specification (check-jsonschema's vendored schema), and its
  wiring (images, commands, healthchecks, secrets, NATS URL);
- every Kubernetes manifest against the Kubernetes 1.30 OpenAPI schemas (kubernetes-validate,
  strict: unknown fields are errors), and its wiring (probes, security context, ConfigMaps);
- the real NATS configuration files: ``nats-server -t``, then a 3-node cluster started from
  them on loopback ports, an R3 stream created, a message published and read back;
- every setting named in an env file, compose.yaml or a ConfigMap is one the services read,
  with a valid value, and every setting they read is named in certibloc.env.example.

Offline and without a container engine.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped, unused-ignore]
import nats
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from nats.js.api import StorageType, StreamConfig
from pydantic import AliasChoices

from services.attestations.application import AttestationsApp
from services.attestations.settings import AttestationsSettings
from services.notifications.application import NotificationsApp
from services.notifications.settings import NotificationsSettings
from services.registry.application import RegistryApp
from services.registry.settings import RegistrySettings
from services.runtime.settings import PERSISTENCE_KEYS, ServiceSettings
from tests.support.cluster import ClusterNode
from tests.support.processes import BIN, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NATS_DIR = DEPLOY / "nats"
KUBERNETES_VERSION = "1.30.0"  # bundled by kubernetes-validate; validated offline
NATS_NODES = ("nats-1", "nats-2", "nats-3")
NATS_URL = "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"
SERVICE_PREFIXES = ("CERTIBLOC_", "REGISTRY_", "ATTESTATIONS_", "NOTIFICATIONS_")

SETTINGS: dict[str, type[ServiceSettings]] = {
    "registry": RegistrySettings,
    "attestations": AttestationsSettings,
    "notifications": NotificationsSettings,
}
APP_NAMES: dict[str, str] = {
    "registry": RegistryApp.name,
    "attestations": AttestationsApp.name,
    "notifications": NotificationsApp.name,
}
PORTS = {"registry": 8101, "attestations": 8102, "notifications": 8103}


# --- helpers ---------------------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_manifests() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def k8s_objects(kind: str | None = None) -> list[dict[str, Any]]:
    objects = [doc for path in k8s_manifests() for doc in load_yaml_documents(path)]
    return [o for o in objects if kind is None or o["kind"] == kind]


def parse_env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """``NAME=value`` lines; with ``commented``, commented-out ones (``# NAME=value``) too, as
    they also name a setting. Inline comments (`` # ...``) are dropped."""
    pattern = r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$" if commented else r"^([A-Z][A-Z0-9_]*)=(.*)$"
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(pattern, line.strip())
        if match:
            found[match.group(1)] = re.sub(r"\s+#.*$", "", match.group(2)).strip()
    return found


def service_of(command: list[str]) -> str:
    """``python -m services.<name> serve`` -> ``<name>``."""
    assert command[:2] == ["python", "-m"] and command[3:] == ["serve"], command
    return command[2].removeprefix("services.")


def rewrite(text: str, replacements: dict[str, str]) -> str:
    """Replace each key once at least; a key missing means the config changed shape."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} not found: tests/deploy rewrites this line"
        text = text.replace(old, new)
    return text


# --- (a) compose --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    result = check_compose_schema(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr

    # The schema is strict enough to matter: a misspelt key is refused.
    broken = (DEPLOY / "compose.yaml").read_text().replace("healthcheck:", "healthchek:", 1)
    (tmp_path / "compose.yaml").write_text(broken)
    result = check_compose_schema(tmp_path / "compose.yaml")
    assert result.returncode == 1 and "healthchek" in result.stdout, result.stdout


def test_compose_runs_the_nats_cluster_from_the_configs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for node in NATS_NODES:
        nats_service = services[node]
        assert nats_service["image"] == "nats:2.11"
        assert nats_service["command"] == ["--config", f"/etc/nats/{node}.conf"]
        assert "./nats:/etc/nats:ro" in nats_service["volumes"]
        assert (NATS_DIR / f"{node}.conf").is_file()
    assert services["postgres"]["image"] == "postgres:16"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_service_wiring(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert service_of(spec["command"]) == service
    assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    assert spec["read_only"] is True
    env = compose_environment(spec)
    assert env["CERTIBLOC_NATS_URL"] == NATS_URL
    assert env["CERTIBLOC_NATS_REPLICAS"] == "3"
    assert env[f"{service.upper()}_HOST"] == "0.0.0.0"  # noqa: S104  # inside its container
    assert env[f"{APP_NAMES[service].upper()}_POSTGRES_SCHEMA"] == service
    port = int(env[f"{service.upper()}_PORT"])
    assert port == PORTS[service]
    probe = " ".join(spec["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe
    assert f"127.0.0.1:{port}:{port}" in spec["ports"]
    defined = compose["secrets"]
    for secret in spec["secrets"]:
        name = secret if isinstance(secret, str) else secret["source"]
        assert name in defined, f"{service} uses undefined secret {name}"
    for name, value in spec.get("environment", {}).items():
        if name.endswith("_FILE"):  # read by the image's entrypoint
            assert value.removeprefix("/run/secrets/") in spec["secrets"], name


def compose_environment(spec: dict[str, Any]) -> dict[str, str]:
    """What a compose service's container gets: its env files, then ``environment``."""
    env: dict[str, str] = {}
    for env_file in spec.get("env_file", []):
        env.update(parse_env_file(DEPLOY / env_file))
    env.update({k: str(v) for k, v in spec.get("environment", {}).items()})
    return env


def test_compose_schemas_match_the_postgres_init_script(compose: dict[str, Any]) -> None:
    init = (DEPLOY / "postgres" / "init-schemas.sql").read_text()
    created = set(re.findall(r"CREATE SCHEMA IF NOT EXISTS (\w+);", init))
    assert created == set(SETTINGS)
    mounts = compose["services"]["postgres"]["volumes"]
    assert any(
        m.startswith("./postgres/init-schemas.sql:/docker-entrypoint-initdb.d/") for m in mounts
    )


def test_init_secrets_creates_what_compose_mounts(tmp_path: Path, compose: dict[str, Any]) -> None:
    target = tmp_path / "secrets"
    run = subprocess.run(
        ["sh", str(DEPLOY / "init-secrets.sh"), str(target)],
        env={**os.environ, "PYTHON": sys.executable},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for secret in compose["secrets"].values():
        assert (target / Path(secret["file"]).relative_to("secrets")).exists(), secret
    keys = target / "attestations-keys"
    kid = (keys / "active").read_text().strip()
    jwk = json.loads((keys / f"{kid}.jwk").read_text())
    assert jwk["kid"] == kid and jwk["crv"] == "Ed25519" and "d" in jwk
    pem = (keys / "pdf" / "pdf-signer.pem").read_bytes()
    assert b"PRIVATE KEY-----" in pem and b"BEGIN CERTIFICATE" in pem
    # No trailing newline: kubectl create secret --from-file keeps the bytes as they are.
    assert re.fullmatch(r"[0-9a-f]{64}", (target / "download-token-secret").read_text())
    assert re.fullmatch(r"[0-9a-f]{48}", (target / "postgres-password").read_text())
    for path in [*target.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"

    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    again = subprocess.run(
        ["sh", str(DEPLOY / "init-secrets.sh"), str(target)],
        env={**os.environ, "PYTHON": sys.executable},
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert again.returncode == 0
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before


def test_entrypoint_turns_file_variables_into_variables(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret value\n")
    show = 'printf "%s|%s" "$POSTGRES_PASSWORD" "${POSTGRES_PASSWORD_FILE-unset}"'
    entrypoint = str(DEPLOY / "docker-entrypoint.sh")
    run = subprocess.run(
        ["sh", entrypoint, "sh", "-c", show],
        env={"PATH": os.environ["PATH"], "POSTGRES_PASSWORD_FILE": str(secret)},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert (run.returncode, run.stdout) == (0, "s3cret value|unset"), run.stderr
    missing = subprocess.run(
        ["sh", entrypoint, "true"],
        env={"PATH": os.environ["PATH"], "X_FILE": str(tmp_path / "absent")},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert missing.returncode == 1 and "X_FILE" in missing.stderr


# --- (b) Kubernetes ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", k8s_manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_manifest_is_valid(path: Path) -> None:
    documents = load_yaml_documents(path)
    assert documents, f"{path} holds no manifest"
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            name = f"{document['kind']}/{document['metadata']['name']}"
            pytest.fail(f"{path.name} {name}: {where}: {error.message}")
        assert document["metadata"].get("namespace", "certibloc") == "certibloc"


def test_kubernetes_validation_is_strict() -> None:
    deployment = copy.deepcopy(k8s_objects("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def containers_by_service() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(service, pod spec, container) for every certibloc container in the Deployments."""
    found = []
    for deployment in k8s_objects("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            found.append((service_of(container["args"]), pod, container))
    return found


def test_kubernetes_deployments_have_probes_resources_and_a_locked_down_filesystem() -> None:
    shared = config_map("certibloc-shared")
    services = set()
    for service, pod, container in containers_by_service():
        services.add(service)
        port = container["ports"][0]
        assert port == {"name": "http", "containerPort": PORTS[service]}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        emptydirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get(shared["CERTIBLOC_VAR_DIR"]) in emptydirs
        assert mounts.get("/tmp") in emptydirs
    assert services == set(SETTINGS)


def test_kubernetes_references_resolve() -> None:
    """Every ConfigMap, Secret key and Service a pod names is defined (Secrets: in the template)."""
    config_maps = {o["metadata"]["name"] for o in k8s_objects("ConfigMap")}
    secrets = {o["metadata"]["name"]: o["stringData"] for o in k8s_objects("Secret")}
    for service, pod, container in containers_by_service():
        for source in container["envFrom"]:
            assert source["configMapRef"]["name"] in config_maps
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], (service, ref)
        for volume in pod["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                assert source["secret"]["name"] in secrets
    services = {o["metadata"]["name"]: o for o in k8s_objects("Service")}
    for name in SETTINGS:
        assert services[name]["spec"]["ports"][0]["port"] == PORTS[name]
    hosts = re.findall(
        r"nats://([\w-]+):4222", config_map("certibloc-shared")["CERTIBLOC_NATS_URL"]
    )
    assert hosts == list(NATS_NODES)
    for host in hosts:  # a Service per server, selecting its pod
        selector = services[host]["spec"]["selector"]
        assert selector["statefulset.kubernetes.io/pod-name"] == host


def test_kubernetes_secret_template_holds_placeholders_only() -> None:
    secrets = k8s_objects("Secret")
    assert secrets
    for secret in secrets:
        assert "data" not in secret, "use stringData placeholders"
        for key, value in secret["stringData"].items():
            assert value.startswith("REPLACE_ME"), f"{secret['metadata']['name']}.{key}"
    for path in k8s_manifests():  # not applied by `kubectl apply -f deploy/k8s/`
        kinds = {doc["kind"] for doc in load_yaml_documents(path)}
        assert "Secret" not in kinds or path.parent == K8S / "secrets", path


def test_kubernetes_nats_statefulset_serves_the_same_configs() -> None:
    (statefulset,) = k8s_objects("StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == 3 and spec["ordinals"]["start"] == 1  # pods nats-1..nats-3
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == "nats:2.11"
    assert container["args"] == ["--config", "/etc/nats/$(POD_NAME).conf"]
    headless = next(
        s for s in k8s_objects("Service") if s["metadata"]["name"] == spec["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
    data = config_map("nats-config")
    for name in ("common.conf", *(f"{node}.conf" for node in NATS_NODES)):
        assert data[name] == (NATS_DIR / name).read_text(), f"ConfigMap nats-config: {name} differs"


def config_map(name: str) -> dict[str, str]:
    found: dict[str, str] = next(
        c["data"] for c in k8s_objects("ConfigMap") if c["metadata"]["name"] == name
    )
    return found


# --- (c) NATS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nats-1.conf", "nats-2.conf", "nats-3.conf", "nats-single.conf"])
def test_nats_server_accepts_the_config(name: str) -> None:
    result = subprocess.run(
        [str(BIN / "nats-server"), "-t", "-c", name],
        cwd=NATS_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout + result.stderr


def test_cluster_configs_sync_periodically_and_single_server_always() -> None:
    common = (NATS_DIR / "common.conf").read_text()
    assert re.search(r'^\s*sync_interval: "2m"$', common, re.MULTILINE)
    single = (NATS_DIR / "nats-single.conf").read_text()
    assert re.search(r"^\s*sync_interval: always$", single, re.MULTILINE)


def write_loopback_configs(nodes: list[ClusterNode]) -> None:
    """Copies of the real configs with loopback ports and a temporary store: nothing else."""
    cluster_ports = {node.name: node.cluster_port for node in nodes}
    for node in nodes:
        node.store.mkdir(parents=True)
        common = rewrite(
            (NATS_DIR / "common.conf").read_text(),
            {
                "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{node.client_port}",
                "http: 0.0.0.0:8222": f"http: 127.0.0.1:{node.monitor_port}",
                'store_dir: "/data/jetstream"': f'store_dir: "{node.store / "jetstream"}"',
            },
        )
        routes = {
            f"nats-route://{other}:6222": f"nats-route://127.0.0.1:{port}"
            for other, port in cluster_ports.items()
            if other != node.name
        }
        own = rewrite(
            (NATS_DIR / f"{node.name}.conf").read_text(),
            {"listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{node.cluster_port}", **routes},
        )
        assert f"server_name: {node.name}\n" in own
        (node.store / "common.conf").write_text(common)
        (node.store / f"{node.name}.conf").write_text(own)


def cluster_formed(nodes: list[ClusterNode]) -> bool:
    """Each server routes to the two others and knows the JetStream meta leader of 3 peers."""
    for node in nodes:
        assert node.process is not None and node.process.poll() is None, node.log_tail()
        routes = {route.get("remote_name") for route in node.monitor("routez").get("routes", [])}
        if routes != {n.name for n in nodes} - {node.name}:
            return False
        meta = node.monitor("jsz").get("meta_cluster") or {}
        if not meta.get("leader") or meta.get("cluster_size") != len(nodes):
            return False
    return True


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[ClusterNode]]:
    nodes = [ClusterNode(name, tmp_path / name) for name in NATS_NODES]
    write_loopback_configs(nodes)
    try:
        for node in nodes:
            node.config = node.store / f"{node.name}.conf"
            node.start()
        wait_for(lambda: cluster_formed(nodes), timeout=15)
        yield nodes
    finally:
        for node in nodes:
            node.kill()


async def test_cluster_from_the_real_configs_replicates_an_r3_stream(
    nats_cluster: list[ClusterNode],
) -> None:
    first, *_, last = nats_cluster
    client = await nats.connect([node.url for node in nats_cluster], connect_timeout=5)
    reader = await nats.connect(last.url, connect_timeout=5)
    try:
        js = client.jetstream()
        config = StreamConfig(
            name="DEPLOY_CHECK",
            subjects=["deploy.check.>"],
            num_replicas=3,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        )
        deadline = time.monotonic() + 15
        while True:  # a just-elected meta leader may still be placing peers
            try:
                info = await js.add_stream(config)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert info.config.num_replicas == 3

        headers = {"Nats-Msg-Id": "deploy-check:1:0"}
        ack = await js.publish("deploy.check.hello", b"bonjour", headers=headers, timeout=5)
        assert (ack.stream, ack.seq, ack.duplicate) == ("DEPLOY_CHECK", 1, None)
        again = await js.publish("deploy.check.hello", b"bonjour", headers=headers, timeout=5)
        assert (again.seq, again.duplicate) == (1, True)  # what relay restarts rely on

        info = await js.stream_info("DEPLOY_CHECK")
        assert info.cluster is not None and info.cluster.leader in NATS_NODES
        peers = {peer.name for peer in info.cluster.replicas or []}
        assert peers | {info.cluster.leader} == set(NATS_NODES)

        message = await reader.jetstream().get_msg("DEPLOY_CHECK", 1)
        assert message.data == b"bonjour" and message.subject == "deploy.check.hello"
        assert first.monitor("jsz").get("streams") == 1
    finally:
        await reader.close()
        await client.close()


# --- (d) settings ------------------------------------------------------------------------------


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No certibloc or eventsourcing setting inherited from the test run's environment."""
    for key in list(os.environ):
        bare = key
        for app in APP_NAMES.values():
            bare = bare.removeprefix(app.upper() + "_")
        if key.startswith(SERVICE_PREFIXES) or bare in PERSISTENCE_KEYS:
            monkeypatch.delenv(key)
    return monkeypatch


def read_by(
    service: str, name: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> bool:
    """Does ``service`` read the variable ``name`` (and accept ``value``)? Set alone, it either
    sets a field of the service's settings or reaches its eventsourcing persistence settings."""
    with monkeypatch.context() as env:
        env.setenv(name, value)
        settings = SETTINGS[service]()
        if settings.model_fields_set:
            return True
        local = settings.model_copy(update={"var_dir": tmp_path})
        return name in local.eventsourcing_env(APP_NAMES[service])


def unread(
    services: list[str],
    variables: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> list[str]:
    """The variables none of ``services`` reads."""
    return sorted(
        name
        for name, value in variables.items()
        if not any(read_by(s, name, value, monkeypatch, tmp_path) for s in services)
    )


def declared_names(settings: type[ServiceSettings]) -> set[str]:
    """The environment variable names a settings class declares (service_name excepted)."""
    prefix = settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, info in settings.model_fields.items():
        if name == "service_name":
            continue
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str) and c.isupper()}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def test_settings_example_names_only_settings_the_services_read(
    clean_environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    variables = parse_env_file(DEPLOY / "certibloc.env.example", commented=True)
    assert unread(sorted(SETTINGS), variables, clean_environ, tmp_path) == []


def test_settings_example_names_every_setting() -> None:
    named = set(parse_env_file(DEPLOY / "certibloc.env.example", commented=True))
    for service, settings in SETTINGS.items():
        missing = declared_names(settings) - named
        assert not missing, f"{service} reads {sorted(missing)}: add them to the example"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_environment_is_read_by_its_service(
    compose: dict[str, Any], service: str, clean_environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = compose_environment(compose["services"][service])
    # NAME_FILE becomes NAME in the entrypoint; the value is a path here, a secret there.
    variables = {name.removesuffix("_FILE"): value for name, value in env.items()}
    variables = {n: "0" * 64 if n.endswith("_SECRET") else v for n, v in variables.items()}
    assert unread([service], variables, clean_environ, tmp_path) == []


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_kubernetes_environment_is_read_by_its_service(
    service: str, clean_environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    containers = [c for s, _, c in containers_by_service() if s == service]
    assert containers
    for container in containers:
        variables: dict[str, str] = {}
        for source in container["envFrom"]:
            variables.update(config_map(source["configMapRef"]["name"]))
        for var in container.get("env", []):
            variables[var["name"]] = var.get("value", "0" * 64)  # from a Secret: any text
        assert unread([service], variables, clean_environ, tmp_path) == []


def test_env_files_match_the_kubernetes_config_maps() -> None:
    """deploy/env/<name>.env and ConfigMap certibloc-<name> hold the same settings."""
    for name in ("shared", *SETTINGS):
        assert parse_env_file(DEPLOY / "env" / f"{name}.env") == config_map(f"certibloc-{name}")
