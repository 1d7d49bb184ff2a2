"""Reading deploy/: paths, YAML and env files, the Kubernetes objects; shared by tests/deploy."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NATS_DIR = DEPLOY / "nats"
NATS_NODES = ("nats-1", "nats-2", "nats-3")
NATS_URL = "tls://nats-1:4222,tls://nats-2:4222,tls://nats-3:4222"
SERVICES = ("attestations", "notifications", "registry")
PROVISIONING = "nats-provision"  # the one-shot provisioning: Compose service, Kubernetes Job
PORTS = {"registry": 8101, "attestations": 8102, "notifications": 8103}
TLS_DIR = "/etc/nats-tls/"  # where the NATS configs read the TLS files
NAMESPACE = "certibloc"


@functools.cache
def _documents(path: Path) -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """The documents of a YAML file (parsed once; each caller gets its own copy)."""
    return copy.deepcopy(list(_documents(path)))


def k8s_manifests() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def k8s_objects(kind: str | None = None) -> list[dict[str, Any]]:
    """Every object under deploy/k8s (the templates in secrets/ included)."""
    objects = [doc for path in k8s_manifests() for doc in load_yaml_documents(path)]
    return [o for o in objects if kind is None or o["kind"] == kind]


def config_map(name: str) -> dict[str, str]:
    found: dict[str, str] = next(
        c["data"] for c in k8s_objects("ConfigMap") if c["metadata"]["name"] == name
    )
    return found


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


def service_workloads() -> list[dict[str, Any]]:
    """The Deployments and StatefulSets that run a certibloc service (not NATS)."""
    return [
        o
        for o in k8s_objects()
        if o["kind"] in {"Deployment", "StatefulSet"}
        and o["metadata"]["labels"].get("app.kubernetes.io/name") != "nats"
    ]


def containers_by_service() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(service, pod spec, container) for every certibloc container in the workloads."""
    found = []
    for workload in service_workloads():
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            found.append((service_of(container["args"]), pod, container))
    return found


def pod_templates() -> dict[str, dict[str, Any]]:
    """Workload name -> its pod template (Deployments, the NATS StatefulSet, the Job)."""
    return {
        o["metadata"]["name"]: o["spec"]["template"]
        for o in k8s_objects()
        if o["kind"] in {"Deployment", "StatefulSet", "Job"}
    }


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def secret_mounts(compose: dict[str, Any], spec: dict[str, Any]) -> dict[str, str]:
    """Where a compose service's secrets appear in its container -> their file on the host
    (relative to deploy/)."""
    mounts: dict[str, str] = {}
    for secret in spec.get("secrets", []):
        source = secret if isinstance(secret, str) else secret["source"]
        target = secret.get("target", source) if isinstance(secret, dict) else source
        path = target if target.startswith("/") else f"/run/secrets/{target}"
        mounts[path] = str(Path(compose["secrets"][source]["file"]))
    return mounts


def compose_environment(spec: dict[str, Any]) -> dict[str, str]:
    """What a compose service's container gets: its env files, then ``environment``."""
    env: dict[str, str] = {}
    for env_file in spec.get("env_file", []):
        env.update(parse_env_file(DEPLOY / env_file))
    env.update({k: str(v) for k, v in spec.get("environment", {}).items()})
    return env


def rewrite(text: str, replacements: dict[str, str]) -> str:
    """Replace each key once at least; a key missing means the config changed shape."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} not found: tests/deploy rewrites this line"
        text = text.replace(old, new)
    return text
