"""The deployment files in deploy/ are valid and agree with the code.

- compose.yaml against the Compose Specification (check-jsonschema's vendored schema), and its
  wiring (images, commands, healthchecks, secrets, NATS URL, each service's own NKey seed; the
  one-shot nats-provision with the provisioner's seed and the CA only, before the services);
- every Kubernetes manifest against the Kubernetes 1.30 OpenAPI schemas (kubernetes-validate,
  strict: unknown fields are errors), and its wiring (probes, security context, ConfigMaps,
  Secrets: each service's own NKey seed, the NATS servers' keys and TLS files; the Job
  nats-provision, the only pod with the provisioner's seed);
- every setting named in an env file, compose.yaml or a ConfigMap is one the services read,
  with a valid value, and every setting they read is named in certibloc.env.example.

The NATS configurations and a cluster started from them: test_nats.py; the NetworkPolicy:
test_network_policy.py. Offline and without a container engine.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped, unused-ignore]
import nkeys
import pytest
from cryptography import x509
from pydantic import AliasChoices

from services.attestations.application import AttestationsApp
from services.attestations.settings import AttestationsSettings
from services.notifications.application import NotificationsApp
from services.notifications.settings import NotificationsSettings
from services.registry.application import RegistryApp
from services.registry.settings import RegistrySettings
from services.runtime import natsauth
from services.runtime.settings import PERSISTENCE_KEYS, ServiceSettings
from tests.deploy.manifests import (
    DEPLOY,
    K8S,
    NATS_DIR,
    NATS_NODES,
    NATS_URL,
    PORTS,
    PROVISIONING,
    TLS_DIR,
    compose_environment,
    compose_file,
    config_map,
    containers_by_service,
    k8s_manifests,
    k8s_objects,
    load_yaml_documents,
    parse_env_file,
    pod_templates,
    secret_mounts,
    service_of,
    service_workloads,
)
from tests.support.processes import BIN
from tools import nats_tls

ROOT = DEPLOY.parent
KUBERNETES_VERSION = "1.30.0"  # bundled by kubernetes-validate; validated offline
SERVICE_PREFIXES = ("CERTIBLOC_", "REGISTRY_", "ATTESTATIONS_", "NOTIFICATIONS_")
PROVISION_COMMAND = ["python", "-m", "services.runtime.provision", "--wait", "120"]

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


# --- (a) compose --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_file()


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


def nkey_variables() -> set[str]:
    """The environment variables deploy/nats/auth.conf names: one public NKey per user."""
    return set(re.findall(r"\$(CERTIBLOC_NKEY_\w+)", (NATS_DIR / "auth.conf").read_text()))


def tls_files_read_by_the_nats_configs() -> set[str]:
    paths = set()
    for config in NATS_DIR.glob("*.conf"):
        paths |= set(re.findall(rf'"({re.escape(TLS_DIR)}[\w.]+)"', config.read_text()))
    return paths


def test_nats_configs_name_one_key_per_user_and_the_tls_files() -> None:
    users = (*natsauth.SERVICES, natsauth.PROVISIONER, natsauth.OPERATOR)
    assert nkey_variables() == {f"CERTIBLOC_NKEY_{user.upper()}" for user in users}
    assert tls_files_read_by_the_nats_configs() == {
        f"{TLS_DIR}{name}" for name in (nats_tls.CERT, nats_tls.KEY, nats_tls.CA_CERT)
    }


def test_compose_nats_servers_get_the_public_keys_and_the_tls_files_only(
    compose: dict[str, Any],
) -> None:
    for node in NATS_NODES:
        spec = compose["services"][node]
        # The public keys, and JetStream's encryption key at rest.
        assert spec["env_file"] == ["secrets/nats/nkeys.env", "secrets/nats/store-key.env"]
        mounts = secret_mounts(compose, spec)
        assert set(mounts) == tls_files_read_by_the_nats_configs()
        for target, source in mounts.items():  # the same name on both sides; never ca.key
            assert source == f"secrets/nats-tls/{Path(target).name}", (target, source)
        assert not any(source.endswith(natsauth.SEED_SUFFIX) for source in mounts.values()), (
            f"{node} holds a seed"
        )


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_service_gets_its_own_nkey_seed_only_and_the_ca(
    compose: dict[str, Any], service: str
) -> None:
    spec = compose["services"][service]
    env = compose_environment(spec)
    mounts = secret_mounts(compose, spec)
    seeds = {t: s for t, s in mounts.items() if s.endswith(natsauth.SEED_SUFFIX)}
    settings = SETTINGS[service](nats_credentials_dir=Path(env["CERTIBLOC_NATS_CREDENTIALS_DIR"]))
    assert seeds == {str(settings.nats_seed_file): f"secrets/nats/{service}.nk"}
    assert mounts[env["CERTIBLOC_NATS_TLS_CA_FILE"]] == "secrets/nats-tls/ca.crt"
    assert not {"secrets/nats-tls/tls.key", "secrets/nats-tls/ca.key"} & set(mounts.values())
    assert "secrets/nats/nkeys.env" not in spec.get("env_file", [])
    # Its own event-store key, at the path CERTIBLOC_STORE_KEY_FILE names; no other's.
    keys = {t: s for t, s in mounts.items() if s.startswith("secrets/store-keys/")}
    assert keys == {env["CERTIBLOC_STORE_KEY_FILE"]: f"secrets/store-keys/{service}.key"}
    assert "secrets/nats/store-key.env" not in spec.get("env_file", [])


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_service_wiring(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert service_of(spec["command"]) == service
    assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    assert spec["read_only"] is True
    env = compose_environment(spec)
    assert env["CERTIBLOC_NATS_URL"] == NATS_URL  # tls://: the servers refuse plaintext
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


def provisioner_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ServiceSettings:
    """The settings ``python -m services.runtime.provision`` reads from ``env``."""
    with monkeypatch.context() as patched:
        for name, value in env.items():
            patched.setenv(name, value)
        return ServiceSettings(service_name=natsauth.PROVISIONER)


def test_compose_provisioning_runs_once_with_the_provisioner_seed_only_and_the_ca(
    compose: dict[str, Any], clean_environ: pytest.MonkeyPatch
) -> None:
    spec = compose["services"][PROVISIONING]
    assert spec["command"] == PROVISION_COMMAND
    assert spec["restart"] == "no"  # one-shot: exits 0 once the streams are there
    assert spec["image"] == compose["services"]["registry"]["image"]  # the services' image
    assert spec["build"] == compose["services"]["registry"]["build"]
    assert spec["read_only"] is True
    assert "healthcheck" not in spec and "ports" not in spec
    # Started with the servers (it waits for them itself), not with PostgreSQL.
    assert spec["depends_on"] == {node: {"condition": "service_started"} for node in NATS_NODES}
    env = compose_environment(spec)
    settings = provisioner_settings(env, clean_environ)
    assert settings.nats_url == NATS_URL  # tls://
    assert settings.nats_stream_replicas == 3
    services = [compose_environment(compose["services"][s]) for s in SETTINGS]
    assert all(  # the streams' max_msg_size: what the services allow themselves
        settings.nats_max_payload == int(e["CERTIBLOC_NATS_MAX_PAYLOAD"]) for e in services
    )
    # Exactly two files: the provisioner's seed where its settings look, and the CA.
    assert secret_mounts(compose, spec) == {
        str(settings.nats_seed_file): "secrets/nats/provisioner.nk",
        str(settings.nats_tls_ca_file): "secrets/nats-tls/ca.crt",
    }
    assert "environment" not in spec  # no *_FILE secret for the entrypoint to expand
    assert "secrets/nats/nkeys.env" not in spec["env_file"]


def test_compose_services_start_once_provisioning_has_succeeded(compose: dict[str, Any]) -> None:
    for service in SETTINGS:
        depends_on = compose["services"][service]["depends_on"]
        assert depends_on[PROVISIONING] == {"condition": "service_completed_successfully"}
        assert depends_on["postgres"] == {"condition": "service_healthy"}


def test_compose_mounts_the_provisioner_seed_in_the_provisioning_only(
    compose: dict[str, Any],
) -> None:
    seed = "secrets/nats/provisioner.nk"
    assert [
        name
        for name, spec in compose["services"].items()
        if seed in secret_mounts(compose, spec).values()
    ] == [PROVISIONING]
    assert not any(seed in spec.get("env_file", []) for spec in compose["services"].values())


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
    for env_file in {f for spec in compose["services"].values() for f in spec.get("env_file", [])}:
        if env_file.startswith("secrets/"):
            assert (target / Path(env_file).relative_to("secrets")).is_file(), env_file
    users = (*natsauth.SERVICES, natsauth.PROVISIONER, natsauth.OPERATOR)
    public = parse_env_file(target / "nats" / "nkeys.env")
    for user in users:
        seed = natsauth.seed_file(target / "nats", user).read_bytes().strip()
        assert (
            nkeys.from_seed(bytearray(seed)).public_key.decode()
            == public[f"CERTIBLOC_NKEY_{user.upper()}"]
        )
    assert set(public) == nkey_variables()
    assert not public["CERTIBLOC_NKEY_OPERATOR"].startswith("S"), "public keys only"
    tls = target / "nats-tls"
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    certificate = x509.load_pem_x509_certificate((tls / "tls.crt").read_bytes())
    certificate.verify_directly_issued_by(ca)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(NATS_NODES) <= set(names.get_values_for_type(x509.DNSName))
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


def file_settings() -> set[str]:
    """Settings the services read whose own name ends in _FILE: paths, not secrets to expand."""
    return {n for s in SETTINGS.values() for n in declared_names(s) if n.endswith("_FILE")}


def test_entrypoint_leaves_the_settings_that_are_paths(tmp_path: Path) -> None:
    assert "CERTIBLOC_NATS_TLS_CA_FILE" in file_settings()
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    names = sorted(file_settings())
    show = "; ".join(f'printf "%s|" "${{{name}-unset}}"' for name in names)
    env = {name: f"/run/secrets/{name.lower()}" for name in names}
    run = subprocess.run(
        ["sh", str(DEPLOY / "docker-entrypoint.sh"), "sh", "-c", show + '; printf "%s" "$X"'],
        env={"PATH": os.environ["PATH"], "X_FILE": str(secret), **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "".join(f"{env[name]}|" for name in names) + "s3cret"


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
    _, job_pod, job_container = provisioning_job()
    pods = [*containers_by_service(), (PROVISIONING, job_pod, job_container)]
    for service, pod, container in pods:
        for source in container["envFrom"]:
            assert source["configMapRef"]["name"] in config_maps
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], (service, ref)
        for volume in pod["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    keys = secrets[source["secret"]["name"]]
                    assert all(item["key"] in keys for item in source["secret"].get("items", []))
                else:
                    data = config_map(source["configMap"]["name"])
                    assert all(item["key"] in data for item in source["configMap"]["items"])
    services = {o["metadata"]["name"]: o for o in k8s_objects("Service")}
    for name in SETTINGS:
        assert services[name]["spec"]["ports"][0]["port"] == PORTS[name]
    hosts = re.findall(r"tls://([\w-]+):4222", config_map("certibloc-shared")["CERTIBLOC_NATS_URL"])
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


def nats_statefulsets() -> list[dict[str, Any]]:
    return [o for o in k8s_objects("StatefulSet") if o["metadata"]["name"] == "nats"]


def test_kubernetes_nats_statefulset_serves_the_same_configs() -> None:
    (statefulset,) = nats_statefulsets()
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
    for name in ("auth.conf", "common.conf", *(f"{node}.conf" for node in NATS_NODES)):
        assert data[name] == (NATS_DIR / name).read_text(), f"ConfigMap nats-config: {name} differs"


def mounted_projections(
    pod: dict[str, Any], container: dict[str, Any]
) -> dict[str, tuple[str, str, str]]:
    """Every file a container sees from a Secret or a ConfigMap volume with ``items``:
    path in the container -> (kind, object name, key)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, tuple[str, str, str]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:  # a StatefulSet's volumeClaimTemplate
            continue
        if "secret" in volume:
            sources = [{"secret": {"name": volume["secret"]["secretName"], **volume["secret"]}}]
        else:
            sources = volume.get("projected", {}).get("sources", [])
        for source in sources:
            ((kind, spec),) = source.items()
            for item in spec.get("items", []):
                files[f"{mount['mountPath']}/{item['path']}"] = (kind, spec["name"], item["key"])
    return files


def test_kubernetes_nats_servers_get_the_public_keys_and_the_tls_secret() -> None:
    (statefulset,) = nats_statefulsets()
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (source,) = container["envFrom"]
    assert set(config_map(source["configMapRef"]["name"])) == nkey_variables()
    files = mounted_projections(pod, container)
    assert set(files) == tls_files_read_by_the_nats_configs()
    for path, (kind, name, key) in files.items():
        assert (kind, name, key) == ("secret", "nats-tls", Path(path).name)
    # JetStream's encryption key at rest, from its Secret (common.conf reads the variable).
    store_key = {
        var["name"]: var["valueFrom"]["secretKeyRef"]
        for var in container["env"]
        if "secretKeyRef" in var.get("valueFrom", {})
    }
    assert store_key == {
        "CERTIBLOC_NATS_STORE_KEY": {"name": "nats-store-key", "key": "CERTIBLOC_NATS_STORE_KEY"}
    }
    (tls,) = (s for s in k8s_objects("Secret") if s["metadata"]["name"] == "nats-tls")
    assert tls["type"] == "kubernetes.io/tls"  # the layout cert-manager writes
    assert set(tls["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}  # never ca.key


def test_kubernetes_service_pods_get_their_own_nkey_seed_only_and_the_ca() -> None:
    shared = config_map("certibloc-shared")
    secrets = {o["metadata"]["name"]: o["stringData"] for o in k8s_objects("Secret")}
    for service, pod, container in containers_by_service():
        files = mounted_projections(pod, container)
        settings = SETTINGS[service](
            nats_credentials_dir=Path(shared["CERTIBLOC_NATS_CREDENTIALS_DIR"])
        )
        seeds = {p: f for p, f in files.items() if f[2].endswith(natsauth.SEED_SUFFIX)}
        own = ("secret", f"certibloc-nats-{service}", f"{service}.nk")
        assert seeds == {str(settings.nats_seed_file): own}, service
        assert set(secrets[own[1]]) == {own[2]}  # the Secret holds that seed and nothing else
        assert files[shared["CERTIBLOC_NATS_TLS_CA_FILE"]] == ("configMap", "nats-ca", "ca.crt")
        named = {name for _, name, _ in files.values()}
        named |= {
            var["valueFrom"]["secretKeyRef"]["name"]
            for var in container.get("env", [])
            if "secretKeyRef" in var.get("valueFrom", {})
        }
        assert not named & {"nats-tls", "nats-nkeys", "nats-store-key"}, service
        # Its own event-store key at CERTIBLOC_STORE_KEY_FILE, and no other service's.
        store_keys = {p: f for p, f in files.items() if f[1].startswith("certibloc-store-")}
        own_key = ("secret", f"certibloc-store-{service}", "store.key")
        assert store_keys == {shared["CERTIBLOC_STORE_KEY_FILE"]: own_key}, service


def provisioning_job() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(the Job, its pod spec, its container)."""
    (job,) = k8s_objects("Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return job, pod, container


def test_kubernetes_provisioning_job_runs_once_locked_down() -> None:
    job, pod, container = provisioning_job()
    assert job["metadata"]["name"] == PROVISIONING
    assert container["args"] == PROVISION_COMMAND
    images = {c["image"] for _, _, c in containers_by_service()}
    assert images == {container["image"]}  # the services' image, the same tag
    spec = job["spec"]
    # Retried (in new pods, with back-off) while the StatefulSet comes up, then given up;
    # kept long enough to read its log, then removed (applying again re-runs it, harmlessly).
    assert 3 <= spec["backoffLimit"] <= 10
    assert 3600 <= spec["ttlSecondsAfterFinished"] <= 7 * 86400
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert "ports" not in container and "env" not in container  # no secret in its environment
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == PROVISIONING
    assert pod_templates()[PROVISIONING]["metadata"]["labels"]["app.kubernetes.io/name"] == (
        PROVISIONING
    )


def test_kubernetes_provisioning_job_gets_the_provisioner_seed_only_and_the_ca(
    clean_environ: pytest.MonkeyPatch,
) -> None:
    _, pod, container = provisioning_job()
    assert [s["configMapRef"]["name"] for s in container["envFrom"]] == ["certibloc-shared"]
    env = config_map("certibloc-shared")
    settings = provisioner_settings(env, clean_environ)
    assert settings.nats_url == NATS_URL and settings.nats_stream_replicas == 3
    secret = f"certibloc-nats-{natsauth.PROVISIONER}"
    seed = f"{natsauth.PROVISIONER}{natsauth.SEED_SUFFIX}"
    assert mounted_projections(pod, container) == {
        str(settings.nats_seed_file): ("secret", secret, seed),
        str(settings.nats_tls_ca_file): ("configMap", "nats-ca", "ca.crt"),
    }
    secrets = {o["metadata"]["name"]: o["stringData"] for o in k8s_objects("Secret")}
    assert set(secrets[secret]) == {seed}  # that seed and nothing else
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp", str(settings.nats_seed_file.parent)}
    emptydirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    assert {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"} <= emptydirs


def named_secrets(pod: dict[str, Any]) -> set[str]:
    """Every Secret a pod spec names: volumes (plain or projected), env, envFrom."""
    names: set[str] = set()
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    for container in pod["containers"]:
        for var in container.get("env", []):
            if "secretKeyRef" in var.get("valueFrom", {}):
                names.add(var["valueFrom"]["secretKeyRef"]["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    return names


def test_kubernetes_mounts_the_provisioner_seed_in_the_job_only() -> None:
    secret = f"certibloc-nats-{natsauth.PROVISIONER}"
    templates = pod_templates()
    assert {"nats", PROVISIONING, *SETTINGS} <= set(templates)
    holders = [name for name, t in templates.items() if secret in named_secrets(t["spec"])]
    assert holders == [PROVISIONING]
    _, pod, _ = provisioning_job()
    assert named_secrets(pod) == {secret}  # and nothing else: no database, no TLS key


def test_nats_certificate_names_every_host_clients_and_routes_dial() -> None:
    names = set(nats_tls.subject_names(NATS_NODES))
    dialed = set(re.findall(r"tls://([\w.-]+):", NATS_URL))
    for config in NATS_DIR.glob("nats-*.conf"):
        dialed |= set(re.findall(r"nats-route://([\w.-]+):", config.read_text()))
        dialed |= set(re.findall(r"advertise: ([\w.-]+):", config.read_text()))
    nats_services = [
        s["metadata"]["name"]
        for s in k8s_objects("Service")
        if s["spec"]["selector"].get("app.kubernetes.io/name") == "nats"
    ]
    for service in nats_services:  # short and qualified, as pods of the namespace dial them
        dialed |= {service, f"{service}.certibloc.svc", f"{service}.certibloc.svc.cluster.local"}
    assert dialed <= names, sorted(dialed - names)


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
    # NAME_FILE becomes NAME in the entrypoint (the value is a path here, a secret there),
    # except settings whose name ends in _FILE.
    kept = file_settings()
    variables = {n if n in kept else n.removesuffix("_FILE"): v for n, v in env.items()}
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


# --- (c) partitions and replicas -------------------------------------------------------------


def test_the_deployment_partitions_are_those_its_nats_authorization_names() -> None:
    shared = config_map("certibloc-shared")
    assert int(shared["CERTIBLOC_PARTITIONS"]) == natsauth.DEPLOY_PARTITIONS
    auth = (DEPLOY / "nats" / "auth.conf").read_text()
    last = natsauth.DEPLOY_PARTITIONS - 1
    assert f"attestations-p{last}" in auth and f"attestations-p{last + 1}" not in auth


@pytest.mark.parametrize("service", ["attestations", "notifications"])
def test_kubernetes_consumer_workers_split_the_partitions_by_pod_index(service: str) -> None:
    """Each worker pod gets its index from the StatefulSet and the count from the manifest;
    the count is the StatefulSet's replicas, so every partition has exactly one owner."""
    (workers,) = (
        o
        for o in service_workloads()
        if o["metadata"]["name"] == service and o["kind"] == "StatefulSet"
    )
    spec = workers["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    (container,) = spec["template"]["spec"]["containers"]
    env = {var["name"]: var for var in container["env"]}
    prefix = service.upper()
    assert env[f"{prefix}_REPLICA_INDEX"]["valueFrom"]["fieldRef"] == {
        "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"
    }
    count = int(env[f"{prefix}_REPLICA_COUNT"]["value"])
    assert count == spec["replicas"] >= 2
    partitions = int(config_map("certibloc-shared")["CERTIBLOC_PARTITIONS"])
    owners = [
        SETTINGS[service](replica_index=i, replica_count=count, partitions=partitions)
        for i in range(count)
    ]
    assigned = sorted(p for s in owners for p in s.assigned_partitions)
    assert assigned == list(range(partitions))
    # Exactly one worker runs the relay: the relay switch is left to its default.
    assert [s.runs_relay for s in owners] == [True] + [False] * (count - 1)
    assert f"{prefix}_RELAY_ENABLED" not in config_map(f"certibloc-{service}")
    assert f"{prefix}_RELAY_ENABLED" not in env
    headless = next(
        o for o in k8s_objects("Service") if o["metadata"]["name"] == spec["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
