"""deploy/k8s/40-network-policy.yaml lets through what certibloc needs and nothing else.

The policies are evaluated here as Kubernetes defines them (networking.k8s.io/v1: a pod
selected by a policy of a direction is isolated in that direction; a connection passes when
the sender's egress and the receiver's ingress both allow it; rules add up; a peer is a
podSelector in the policy's namespace, a namespaceSelector, or both; named ports resolve
against the destination pod's container ports), on the pods of the real manifests and a few
strangers: an unlabelled pod of the namespace, the ingress controller, Prometheus, a pod of
another namespace, and addresses outside the cluster.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.runtime.settings import METRICS_PORT_OFFSET
from tests.deploy.manifests import (
    NAMESPACE,
    PORTS,
    PROVISIONING,
    SERVICES,
    k8s_objects,
    pod_templates,
)

INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_LABEL = {"certibloc-monitoring": "true"}


@dataclass(frozen=True)
class Pod:
    """A pod (namespace and labels), or with ``namespace=None`` an address outside the cluster."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace: str | None = NAMESPACE
    namespace_labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # named container ports

    def __post_init__(self) -> None:
        if self.namespace is not None:
            self.namespace_labels.setdefault("kubernetes.io/metadata.name", self.namespace)


TEMPLATES = pod_templates()


def workload(name: str) -> Pod:
    template = TEMPLATES[name]
    ports = {
        port["name"]: port["containerPort"]
        for container in template["spec"]["containers"]
        for port in container.get("ports", [])
        if "name" in port
    }
    return Pod(name, dict(template["metadata"]["labels"]), ports=ports)


NATS = workload("nats")
REGISTRY = workload("registry")
ATTESTATIONS = workload("attestations")
ATTESTATIONS_WEB = workload("attestations-web")
NOTIFICATIONS = workload("notifications")
PROVISION = workload(PROVISIONING)  # the Job's pods
SERVICE_PODS = {"registry": REGISTRY, "attestations": ATTESTATIONS, "notifications": NOTIFICATIONS}
STRANGER = Pod("debug pod in the namespace", {"app": "debug"})
INGRESS = Pod("ingress controller", {"app.kubernetes.io/name": "ingress-nginx"}, INGRESS_NAMESPACE)
PROMETHEUS = Pod(
    "prometheus", {"app": "prometheus"}, "monitoring", namespace_labels=dict(MONITORING_LABEL)
)
ELSEWHERE = Pod("pod of another namespace", {"app.kubernetes.io/name": "registry"}, "other")
INTERNET = Pod("outside the cluster", namespace=None)


@functools.cache
def _policies() -> tuple[dict[str, Any], ...]:
    return tuple(k8s_objects("NetworkPolicy"))


def policies() -> list[dict[str, Any]]:
    return list(_policies())


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions; ``{}`` selects everything)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def policy_types(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    default = ["Ingress", *(["Egress"] if "egress" in spec else [])]
    return list(spec.get("policyTypes", default))


def peer_matches(peer: dict[str, Any], other: Pod) -> bool:
    if "ipBlock" in peer:
        return other.namespace is None  # only addresses outside the cluster are tested so
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != NAMESPACE:
        return False
    return selects(peer.get("podSelector", {}), other.labels)


def port_matches(
    rule_ports: list[dict[str, Any]] | None, port: int, protocol: str, to: Pod
) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        number = to.ports.get(wanted) if isinstance(wanted, str) else wanted
        if number == port or (number is not None and number < port <= entry.get("endPort", 0)):
            return True
    return False


def direction_allows(
    direction: str, pod: Pod, other: Pod, port: int, protocol: str, destination: Pod
) -> bool:
    """Does ``pod``'s ingress (from ``other``) or egress (to ``other``) allow it?"""
    if pod.namespace != NAMESPACE:
        return True  # not ours: only certibloc's namespace is under test
    selecting = [
        p
        for p in policies()
        if selects(p["spec"]["podSelector"], pod.labels) and direction in policy_types(p)
    ]
    if not selecting:
        return True  # not isolated
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(peer, other) for peer in peers)) and port_matches(
                rule.get("ports"), port, protocol, destination
            ):
                return True
    return False


def allowed(source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
    return direction_allows(
        "Egress", source, destination, port, protocol, destination
    ) and direction_allows("Ingress", destination, source, port, protocol, destination)


# --- the tests --------------------------------------------------------------------------------


def test_every_pod_of_the_namespace_is_isolated_both_ways() -> None:
    (deny,) = (p for p in policies() if p["metadata"]["name"] == "default-deny")
    assert deny["spec"]["podSelector"] == {}  # every pod of the namespace
    assert sorted(policy_types(deny)) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    assert all(p["metadata"]["namespace"] == NAMESPACE for p in policies())
    assert not allowed(STRANGER, REGISTRY, PORTS["registry"])
    assert not allowed(STRANGER, INTERNET, 443)


def test_the_policies_select_the_pods_they_are_for() -> None:
    by_name = {p["metadata"]["name"]: p["spec"]["podSelector"] for p in policies()}
    assert selects(by_name["nats"], NATS.labels)
    assert not any(selects(by_name["nats"], pod.labels) for pod in SERVICE_PODS.values())
    for pod in (*SERVICE_PODS.values(), ATTESTATIONS_WEB):
        assert selects(by_name["certibloc-services"], pod.labels), pod.name
    assert not selects(by_name["certibloc-services"], NATS.labels)
    assert [n for n, s in by_name.items() if s and selects(s, NOTIFICATIONS.labels)] == [
        "certibloc-services",
        "notifications-deliveries",
    ]
    assert [n for n, s in by_name.items() if s and selects(s, PROVISION.labels)] == [PROVISIONING]
    assert not any(
        selects(by_name[PROVISIONING], pod.labels)
        for pod in (NATS, *SERVICE_PODS.values(), ATTESTATIONS_WEB, STRANGER)
    )


@pytest.mark.parametrize("service", SERVICES)
def test_nats_clients_are_the_three_services_and_the_provisioning_job_only(service: str) -> None:
    assert allowed(SERVICE_PODS[service], NATS, 4222)
    assert allowed(PROVISION, NATS, 4222)
    assert not allowed(SERVICE_PODS[service], NATS, 6222)  # routes are the servers' own
    assert allowed(ATTESTATIONS_WEB, NATS, 4222)
    for stranger in (STRANGER, INGRESS, PROMETHEUS, ELSEWHERE, INTERNET):
        assert not allowed(stranger, NATS, 4222), stranger.name


def test_nats_routes_are_between_the_servers_only() -> None:
    assert allowed(NATS, NATS, 6222)
    for stranger in (STRANGER, REGISTRY, ELSEWHERE, INTERNET):
        assert not allowed(stranger, NATS, 6222), stranger.name
    assert not allowed(NATS, INTERNET, 443) and not allowed(NATS, REGISTRY, PORTS["registry"])


def test_nats_monitoring_is_for_the_monitoring_namespace_and_the_namespace() -> None:
    assert allowed(PROMETHEUS, NATS, 8222)
    # NATS accepts any pod of the namespace on 8222; that pod's egress must allow it too, and
    # none of the namespace's policies does (a debugging pod would need its own).
    assert direction_allows("Ingress", NATS, STRANGER, 8222, "TCP", NATS)
    assert not allowed(STRANGER, NATS, 8222)
    for stranger in (INGRESS, ELSEWHERE, INTERNET):
        assert not allowed(stranger, NATS, 8222), stranger.name


@pytest.mark.parametrize("service", SERVICES)
def test_service_http_from_the_ingress_controller_only(service: str) -> None:
    pod, port = SERVICE_PODS[service], PORTS[service]
    assert pod.ports["http"] == port
    assert allowed(INGRESS, pod, port)
    for stranger in (PROMETHEUS, STRANGER, ELSEWHERE, INTERNET, NATS):
        assert not allowed(stranger, pod, port), stranger.name
    assert not allowed(INGRESS, pod, 4222) and not allowed(INGRESS, NATS, 4222)


@pytest.mark.parametrize("pod", [REGISTRY, ATTESTATIONS, ATTESTATIONS_WEB, NOTIFICATIONS])
def test_service_metrics_from_the_monitoring_namespace_only(pod: Pod) -> None:
    """/metrics is on its own port (never the public one), for Prometheus alone."""
    port = pod.ports["metrics"]
    assert port == pod.ports["http"] + METRICS_PORT_OFFSET
    assert allowed(PROMETHEUS, pod, port)
    for stranger in (INGRESS, STRANGER, ELSEWHERE, INTERNET, NATS):
        assert not allowed(stranger, pod, port), stranger.name


@pytest.mark.parametrize(
    "pod",
    [NATS, REGISTRY, ATTESTATIONS, NOTIFICATIONS, PROVISION, STRANGER],
    ids=lambda pod: pod.name,
)
def test_every_pod_resolves_names(pod: Pod) -> None:
    assert allowed(pod, INTERNET, 53, "UDP") and allowed(pod, INTERNET, 53, "TCP")


@pytest.mark.parametrize("service", SERVICES)
def test_services_reach_postgresql_and_nats(service: str) -> None:
    assert allowed(SERVICE_PODS[service], INTERNET, 5432)
    assert allowed(SERVICE_PODS[service], NATS, 4222)
    assert not allowed(STRANGER, INTERNET, 5432)


def test_only_notifications_sends_mail_and_webhooks() -> None:
    for port in (25, 465, 587, 443):
        assert allowed(NOTIFICATIONS, INTERNET, port), port
        assert not allowed(REGISTRY, INTERNET, port) and not allowed(ATTESTATIONS, INTERNET, port)
    assert not allowed(NOTIFICATIONS, INTERNET, 22)


# Every port anything here listens on or sends to, and a few more.
PROBED_PORTS = sorted({4222, 6222, 8222, 5432, 25, 465, 587, 443, 80, 22, 8080, *PORTS.values()})
EVERYONE = [
    NATS,
    REGISTRY,
    ATTESTATIONS,
    ATTESTATIONS_WEB,
    NOTIFICATIONS,
    STRANGER,
    INGRESS,
    PROMETHEUS,
    ELSEWHERE,
    INTERNET,
]


def test_the_provisioning_job_reaches_nats_clients_and_dns_only() -> None:
    reached = {
        (to.name, port, protocol)
        for to in EVERYONE
        for port in [*PROBED_PORTS, 53]
        for protocol in ("TCP", "UDP")
        if allowed(PROVISION, to, port, protocol)
    }
    # Port 53 goes anywhere, for every pod (policy "dns": node-local caches, kube-dns in its
    # own namespace); besides that, the NATS servers' client port and nothing else.
    dns = {(name, port, protocol) for name, port, protocol in reached if port == 53}
    assert {("outside the cluster", 53, "TCP"), ("outside the cluster", 53, "UDP")} <= dns
    assert reached - dns == {("nats", 4222, "TCP")}


def test_nothing_reaches_the_provisioning_job() -> None:
    assert not [
        (source.name, port)
        for source in (*EVERYONE, PROVISION)
        for port in PROBED_PORTS
        if allowed(source, PROVISION, port)
    ]
