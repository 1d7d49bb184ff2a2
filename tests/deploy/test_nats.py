"""The real NATS configuration files of deploy/nats, with generated NKeys and TLS files.

- auth.conf is exactly what ``python -m services.runtime.natsauth deploy-config`` generates;
- ``max_payload`` is written out wherever a server is configured, at least what the services
  allow themselves;
- ``nats-server -t`` accepts every configuration given the CERTIBLOC_NKEY_* variables and the
  TLS files, and refuses it without the keys (a server never starts open);
- a 3-node cluster started from them (loopback ports, temporary paths: nothing else changed)
  forms over TLS routes and replicates an R3 stream for the operator's key over TLS; it
  refuses anonymous clients, plaintext clients and a route without a certificate from the CA;
- the provisioner's key provisions every stream of the contracts R3 and every durable
  consumer over TLS (``services.runtime.provision``), again without changing anything, and
  may delete nothing nor create another stream; ``python -m services.runtime.provision``
  runs with exactly what compose gives the nats-provision container;
- each service's key reads its stream's state and messages, publishes its own events and
  looks up its consumers, but may not create, update or delete a stream (not even its own),
  create a consumer, or publish another service's events.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ClusterInfo,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import NotFoundError

from contracts.subjects import (
    CONSUMERS,
    STREAMS,
    deadletter_stream,
    deadletter_subjects,
    durable_for,
    partition_subjects,
    stream_subjects,
)
from services.runtime import natsauth
from services.runtime.nats import DEADLETTER_MAX_BYTES, connect
from services.runtime.provision import ACK_WAIT, Topology, provision
from services.runtime.settings import ServiceSettings
from tests.deploy.manifests import (
    DEPLOY,
    NATS_DIR,
    NATS_NODES,
    PROVISIONING,
    TLS_DIR,
    compose_environment,
    compose_file,
    config_map,
    parse_env_file,
    rewrite,
    secret_mounts,
)
from tests.support.cluster import ClusterNode
from tests.support.processes import BIN, eventually, free_port, wait_for
from tools import nats_tls

CONFIGS = ["nats-1.conf", "nats-2.conf", "nats-3.conf", "nats-single.conf"]
STORE_KEY_VARIABLE = "CERTIBLOC_NATS_STORE_KEY"  # JetStream's encryption key at rest
MAX_PAYLOAD = 1024 * 1024


@dataclass(frozen=True)
class Secrets:
    """What deploy/init-secrets.sh makes, generated here: NKeys and the TLS files."""

    credentials: Path
    tls: Path
    public_keys: dict[str, str]

    @property
    def environment(self) -> dict[str, str]:
        """The NATS servers' environment (compose: secrets/nats/nkeys.env and store-key.env)."""
        return {
            **{f"CERTIBLOC_NKEY_{u.upper()}": key for u, key in self.public_keys.items()},
            STORE_KEY_VARIABLE: "test-store-key-" + "k" * 32,
        }

    def seed(self, user: str) -> Path:
        return natsauth.seed_file(self.credentials, user)

    @property
    def ca(self) -> Path:
        return self.tls / nats_tls.CA_CERT

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Secrets:
    root = tmp_path_factory.mktemp("deploy-secrets")
    keys = natsauth.ensure_credentials(root / "nats")
    nats_tls.ensure(root / "nats-tls", NATS_NODES)
    return Secrets(root / "nats", root / "nats-tls", keys)


def copy_configs(target: Path, secrets: Secrets) -> None:
    """deploy/nats/*.conf in ``target``, reading the TLS files from ``secrets``."""
    target.mkdir(parents=True, exist_ok=True)
    for config in NATS_DIR.glob("*.conf"):
        text = config.read_text()
        if TLS_DIR in text:
            text = rewrite(text, {TLS_DIR: f"{secrets.tls}/"})
        (target / config.name).write_text(text)


# --- the files --------------------------------------------------------------------------------


def test_auth_conf_is_the_generated_authorization() -> None:
    assert (NATS_DIR / "auth.conf").read_text() == natsauth.deploy_config(), (
        "deploy/nats/auth.conf is stale: python -m services.runtime.natsauth deploy-config "
        "> deploy/nats/auth.conf (and copy it into deploy/k8s/10-nats.yaml)"
    )


def test_every_server_config_includes_the_authorization_and_requires_tls() -> None:
    for name in ("common.conf", "nats-single.conf"):
        text = (NATS_DIR / name).read_text()
        assert re.search(r"^include \./auth\.conf$", text, re.MULTILINE), name
        assert re.search(r"^tls \{$", text, re.MULTILINE), f"{name}: no TLS for clients"
        assert not re.search(r"^\s*(no_auth_user|allow_non_tls)\b", text, re.MULTILINE), name
    for node in NATS_NODES:
        text = (NATS_DIR / f"{node}.conf").read_text()
        assert "include ./common.conf" in text
        cluster = text[text.index("cluster {") :]
        assert re.search(r"^\s+tls \{$", cluster, re.MULTILINE), f"{node}: routes in plaintext"
        assert re.search(r"^\s+verify: true$", cluster, re.MULTILINE), node


def test_every_server_encrypts_its_jetstream_store_with_a_key_from_its_environment() -> None:
    for name in ("common.conf", "nats-single.conf"):
        text = (NATS_DIR / name).read_text()
        block = text[text.index("jetstream {") :]
        block = block[: block.index("\n}")]
        assert re.search(r"^\s+cipher: chachapoly$", block, re.MULTILINE), name
        assert re.search(rf"^\s+key: \${STORE_KEY_VARIABLE}$", block, re.MULTILINE), name


def test_max_payload_is_explicit_and_covers_what_the_services_allow() -> None:
    for name in ("common.conf", "nats-single.conf"):
        found = re.findall(r"^max_payload: (\d+)$", (NATS_DIR / name).read_text(), re.MULTILINE)
        assert found == [str(MAX_PAYLOAD)], f"{name}: max_payload must be written out once"
    allowed = [
        ServiceSettings.model_fields["nats_max_payload"].default,
        int(parse_env_file(DEPLOY / "env" / "shared.env")["CERTIBLOC_NATS_MAX_PAYLOAD"]),
        int(config_map("certibloc-shared")["CERTIBLOC_NATS_MAX_PAYLOAD"]),
    ]
    assert max(allowed) <= MAX_PAYLOAD, "a stored event the bus refuses stops the relay"


def nats_test(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "nats-server"), "-t", "-c", config.name],
        cwd=config.parent,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("name", CONFIGS)
def test_nats_server_accepts_the_config(name: str, secrets: Secrets, tmp_path: Path) -> None:
    copy_configs(tmp_path, secrets)
    result = nats_test(tmp_path / name, secrets.environment)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout + result.stderr

    # Without the public keys in its environment, a server does not start (never open).
    missing = nats_test(tmp_path / name, {})
    assert missing.returncode != 0 and "CERTIBLOC_NKEY_" in missing.stderr, missing.stderr
    # Nor without JetStream's encryption key (never unencrypted).
    without_key = {k: v for k, v in secrets.environment.items() if k != STORE_KEY_VARIABLE}
    unkeyed = nats_test(tmp_path / name, without_key)
    assert unkeyed.returncode != 0 and STORE_KEY_VARIABLE in unkeyed.stderr, unkeyed.stderr


def test_cluster_configs_sync_periodically_and_single_server_always() -> None:
    common = (NATS_DIR / "common.conf").read_text()
    assert re.search(r'^\s*sync_interval: "2m"$', common, re.MULTILINE)
    single = (NATS_DIR / "nats-single.conf").read_text()
    assert re.search(r"^\s*sync_interval: always$", single, re.MULTILINE)


# --- a cluster from the real configs ----------------------------------------------------------


def write_loopback_configs(nodes: list[ClusterNode], secrets: Secrets) -> None:
    """Copies of the real configs with loopback ports, a temporary store and the generated TLS
    files: nothing else. auth.conf is copied as it is."""
    by_name = {node.name: node for node in nodes}
    for node in nodes:
        node.store.mkdir(parents=True)
        shutil.copy(NATS_DIR / "auth.conf", node.store / "auth.conf")
        common = rewrite(
            (NATS_DIR / "common.conf").read_text(),
            {
                "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{node.client_port}",
                "http: 0.0.0.0:8222": f"http: 127.0.0.1:{node.monitor_port}",
                'store_dir: "/data/jetstream"': f'store_dir: "{node.store / "jetstream"}"',
                TLS_DIR: f"{secrets.tls}/",
            },
        )
        routes = {
            f"nats-route://{other}:6222": f"nats-route://127.0.0.1:{peer.cluster_port}"
            for other, peer in by_name.items()
            if other != node.name
        }
        own = rewrite(
            (NATS_DIR / f"{node.name}.conf").read_text(),
            {
                "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{node.cluster_port}",
                f"advertise: {node.name}:4222": f"advertise: 127.0.0.1:{node.client_port}",
                f"advertise: {node.name}:6222": f"advertise: 127.0.0.1:{node.cluster_port}",
                TLS_DIR: f"{secrets.tls}/",
                **routes,
            },
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


def loopback_cluster(root: Path, secrets: Secrets) -> list[ClusterNode]:
    nodes = [ClusterNode(name, root / name) for name in NATS_NODES]
    write_loopback_configs(nodes, secrets)
    for node in nodes:
        node.config = node.store / f"{node.name}.conf"
    return nodes


def start_servers(nodes: list[ClusterNode], secrets: Secrets) -> None:
    # The servers read the public keys from their environment, as in compose and k8s.
    with pytest.MonkeyPatch.context() as env:
        for name, value in secrets.environment.items():
            env.setenv(name, value)
        for node in nodes:
            node.start()


@pytest.fixture(scope="module")
def nats_cluster(
    tmp_path_factory: pytest.TempPathFactory, secrets: Secrets
) -> Iterator[list[ClusterNode]]:
    nodes = loopback_cluster(tmp_path_factory.mktemp("nats-cluster"), secrets)
    try:
        start_servers(nodes, secrets)
        wait_for(lambda: cluster_formed(nodes), timeout=20)
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def tls_urls(nodes: list[ClusterNode]) -> list[str]:
    return [f"tls://127.0.0.1:{node.client_port}" for node in nodes]


async def as_user(
    nodes: list[ClusterNode], secrets: Secrets, user: str
) -> tuple[Client, list[str]]:
    """A client with ``user``'s seed over TLS, and the errors the servers send it."""
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    client = await nats.connect(
        tls_urls(nodes),
        nkeys_seed=str(secrets.seed(user)),
        inbox_prefix=natsauth.inbox_prefix(user) if user != natsauth.OPERATOR else "_INBOX",
        tls=secrets.client_tls(),
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=5,
    )
    return client, errors


@pytest.fixture
async def operator(nats_cluster: list[ClusterNode], secrets: Secrets) -> AsyncIterator[Client]:
    client, _ = await as_user(nats_cluster, secrets, natsauth.OPERATOR)
    yield client
    await client.close()


async def when_placed(action: Callable[[], Awaitable[object]]) -> None:
    """A just-elected meta leader may still be placing peers: retry until a deadline."""
    deadline = time.monotonic() + 15
    while True:
        try:
            await action()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def as_provisioner(nodes: list[ClusterNode], secrets: Secrets) -> Client:
    """Connected as ``python -m services.runtime.provision`` connects: its own seed, tls://
    URLs and the CA (services.runtime.nats.connect)."""
    return await connect(
        ",".join(tls_urls(nodes)),
        natsauth.PROVISIONER,
        seed_file=secrets.seed(natsauth.PROVISIONER),
        inbox_prefix=natsauth.inbox_prefix(natsauth.PROVISIONER),
        tls_ca_file=secrets.ca,
    )


@pytest.fixture(scope="module")
async def provisioned(nats_cluster: list[ClusterNode], secrets: Secrets) -> None:
    """What the provisioning job does once the cluster is up: every stream R3 and every
    durable consumer, with the provisioner's key."""
    client = await as_provisioner(nats_cluster, secrets)
    try:
        await when_placed(
            lambda: provision(client.jetstream(), Topology(replicas=3, partitions=PARTITIONS))
        )
    finally:
        await client.close()


PARTITIONS = natsauth.DEPLOY_PARTITIONS  # what deploy/ runs with (env/shared.env)


def lanes(service: str) -> list[tuple[str, str, int]]:
    """(producer, durable, partition) of each lane ``service`` consumes."""
    return [
        (producer, durable_for(base, partition, PARTITIONS), partition)
        for producer, base in CONSUMERS[service]
        for partition in range(PARTITIONS)
    ]


def durables(service: str) -> list[tuple[str, str]]:
    return [(producer, durable) for producer, durable, _ in lanes(service)]


def expected_streams() -> dict[str, list[str]]:
    """The contracts' streams -> their subjects: each producer's, each consumer's dead letters."""
    streams = {stream: stream_subjects(service) for service, stream in STREAMS.items()}
    for service, consumes in CONSUMERS.items():
        if consumes:
            streams[deadletter_stream(service)] = deadletter_subjects(service)
    return streams


def test_cluster_routes_and_clients_are_tls(nats_cluster: list[ClusterNode]) -> None:
    for node in nats_cluster:
        varz = node.monitor("varz")
        assert varz["tls_required"] is True and not varz.get("tls_verify")  # NKeys, not certs
        assert varz["max_payload"] == MAX_PAYLOAD
        assert varz["cluster"]["tls_required"] is True and varz["cluster"]["tls_verify"] is True
        assert varz["auth_required"] is True


async def test_cluster_replicates_an_r3_stream_for_the_operator_over_tls(
    nats_cluster: list[ClusterNode], secrets: Secrets, operator: Client
) -> None:
    first, *_, last = nats_cluster
    reader, _ = await as_user([last], secrets, natsauth.OPERATOR)
    try:
        js = operator.jetstream()
        config = StreamConfig(
            name="DEPLOY_CHECK",
            subjects=["deploy.check.>"],
            num_replicas=3,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        )
        await when_placed(lambda: js.add_stream(config))

        headers = {"Nats-Msg-Id": "deploy-check:1:0"}
        ack = await js.publish("deploy.check.hello", b"bonjour", headers=headers, timeout=5)
        assert (ack.stream, ack.seq, ack.duplicate) == ("DEPLOY_CHECK", 1, None)
        again = await js.publish("deploy.check.hello", b"bonjour", headers=headers, timeout=5)
        assert (again.seq, again.duplicate) == (1, True)  # what relay restarts rely on

        info = await js.stream_info("DEPLOY_CHECK")
        assert info.config.num_replicas == 3
        assert info.cluster is not None and info.cluster.leader in NATS_NODES
        peers = {peer.name for peer in info.cluster.replicas or []}
        assert peers | {info.cluster.leader} == set(NATS_NODES)

        message = await reader.jetstream().get_msg("DEPLOY_CHECK", 1)
        assert message.data == b"bonjour" and message.subject == "deploy.check.hello"
        assert reader.connected_url is not None and reader.connected_url.scheme == "tls"
        assert first.monitor("jsz").get("streams", 0) >= 1
    finally:
        await reader.close()


def placed_on(cluster: ClusterInfo | None) -> set[str]:
    """The servers holding a replica of a stream or consumer (its leader included)."""
    assert cluster is not None and cluster.leader in NATS_NODES
    return {str(cluster.leader), *(str(peer.name) for peer in cluster.replicas or [])}


async def test_the_provisioner_key_provisions_every_stream_r3_over_tls(
    nats_cluster: list[ClusterNode], secrets: Secrets, provisioned: None, operator: Client
) -> None:
    js = operator.jetstream()
    created: dict[tuple[str, str | None], object] = {}  # (stream, consumer) -> when created
    for name, subjects in expected_streams().items():
        info = await js.stream_info(name)
        assert info.config.subjects == subjects, name
        assert info.config.num_replicas == 3, name
        assert placed_on(info.cluster) == set(NATS_NODES), name
        assert info.config.storage == StorageType.FILE
        if name in STREAMS.values():  # what a service may publish: at most the bus's payload
            assert info.config.max_msg_size == MAX_PAYLOAD, name
        else:  # dead letters: bounded, the oldest dropped first
            assert info.config.max_bytes == DEADLETTER_MAX_BYTES, name
            assert info.config.discard == DiscardPolicy.OLD, name
        created[(name, None)] = info.created
    for service in CONSUMERS:
        for producer, durable, partition in lanes(service):
            consumer = await js.consumer_info(STREAMS[producer], durable)
            assert consumer.config.durable_name == durable, service
            assert consumer.config.filter_subject == partition_subjects(producer, partition)
            assert consumer.config.ack_policy == AckPolicy.EXPLICIT
            assert consumer.config.deliver_policy == DeliverPolicy.ALL
            assert placed_on(consumer.cluster) == set(NATS_NODES), durable
            created[(STREAMS[producer], durable)] = consumer.created

    client, errors = await as_user(nats_cluster, secrets, natsauth.PROVISIONER)
    try:
        assert client.connected_url is not None and client.connected_url.scheme == "tls"
        provisioner = client.jetstream(timeout=0.5)
        await provision(
            provisioner, Topology(replicas=3, partitions=PARTITIONS)
        )  # again: aligns, changes nothing
        for (stream, consumer_name), when in created.items():
            again = await (
                js.stream_info(stream)
                if consumer_name is None
                else js.consumer_info(stream, consumer_name)
            )
            assert again.created == when, f"{stream} {consumer_name or ''} created again"
        # It creates and aligns those streams and consumers, and does nothing else.
        refusals: dict[str, Callable[[], Awaitable[object]]] = {
            "$JS.API.STREAM.DELETE.CERTIBLOC_REGISTRY": lambda: provisioner.delete_stream(
                STREAMS["registry"]
            ),
            "$JS.API.STREAM.CREATE.CAPTURE": lambda: provisioner.add_stream(
                StreamConfig(name="CAPTURE", subjects=["_INBOX_registry.>"])
            ),
            "$JS.API.CONSUMER.DELETE.CERTIBLOC_REGISTRY.attestations": (
                lambda: provisioner.delete_consumer(STREAMS["registry"], "attestations")
            ),
        }
        for refused in refusals.values():
            with pytest.raises((nats.errors.Error, asyncio.TimeoutError)):
                await refused()
        await client.publish("certibloc.registry.bloc-validated.v1", b"{}")
        await client.flush()
        await refused_all(errors, [*refusals, "certibloc.registry.bloc-validated.v1"])
    finally:
        await client.close()
    assert "CAPTURE" not in {s.config.name for s in await js.streams_info()}


async def refused_all(errors: list[str], subjects: list[str]) -> None:
    """The servers sent a permissions violation for each of ``subjects``."""

    def missing() -> list[str]:
        seen = " ".join(errors).lower()
        return [s for s in subjects if f'"{s.lower()}"' not in seen]

    await eventually(lambda: not missing(), 5, f"permissions violations for {subjects}")
    assert all("permissions violation" in error.lower() for error in errors), errors


def provisioning_environment(
    nodes: list[ClusterNode], secrets: Secrets, root: Path
) -> dict[str, str]:
    """The environment of compose's nats-provision container, on this machine: its secrets
    copied under ``root`` where compose mounts them, its paths and URLs pointed there and at
    the loopback servers; every other setting as compose.yaml gives it."""
    compose = compose_file()
    spec = compose["services"][PROVISIONING]
    hosts = {"secrets/nats/": secrets.credentials, "secrets/nats-tls/": secrets.tls}
    for target, source in secret_mounts(compose, spec).items():
        directory = next(d for prefix, d in hosts.items() if source.startswith(prefix))
        local = root / target.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(directory / Path(source).name, local)
    env = {
        name: str(root / value.lstrip("/")) if value.startswith("/run/secrets/") else value
        for name, value in compose_environment(spec).items()
    }
    assert env["CERTIBLOC_NATS_URL"] == ",".join(f"tls://{node}:4222" for node in NATS_NODES)
    env["CERTIBLOC_NATS_URL"] = ",".join(tls_urls(nodes))
    return env


def run_provisioning(env: dict[str, str], wait: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.runtime.provision", "--wait", str(wait)],
        cwd=DEPLOY.parent,
        env={"PATH": "/usr/bin:/bin", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_provisioning_command_runs_with_what_compose_gives_its_container(
    nats_cluster: list[ClusterNode], secrets: Secrets, provisioned: None, tmp_path: Path
) -> None:
    """``python -m services.runtime.provision`` with nats-provision's settings and nothing in
    its credentials directory but the provisioner's seed and the CA."""
    env = provisioning_environment(nats_cluster, secrets, tmp_path)
    mounted = Path(env["CERTIBLOC_NATS_CREDENTIALS_DIR"])
    assert sorted(p.name for p in mounted.iterdir()) == ["ca.crt", "provisioner.nk"]
    assert env["CERTIBLOC_NATS_TLS_CA_FILE"] == str(mounted / "ca.crt")
    with run_provisioning(env, wait=30) as provisioning:
        output, _ = provisioning.communicate(timeout=60)
    assert provisioning.returncode == 0, output
    assert "streams and consumers provisioned" in output


def connected(node: ClusterNode, name: str) -> bool:
    """A client called ``name`` is connected to ``node``."""
    connections = node.monitor("connz").get("connections") or []
    return any(c.get("name") == name for c in connections)


def test_provisioning_connected_before_the_cluster_formed_waits_for_it(
    secrets: Secrets, tmp_path: Path
) -> None:
    """Compose starts nats-provision as soon as the servers' containers have started (they
    have no healthcheck), Kubernetes the Job beside the StatefulSet: it may reach one server
    before the others are up. It must wait for the cluster, within --wait, and succeed."""
    first, *others = nodes = loopback_cluster(tmp_path / "cluster", secrets)
    env = provisioning_environment(nodes, secrets, tmp_path / "container")
    try:
        start_servers([first], secrets)
        with run_provisioning(env, wait=60) as provisioning:
            try:
                wait_for(lambda: connected(first, natsauth.PROVISIONER), timeout=30)
                # Its first JetStream request found no meta leader, and it says it waits.
                assert provisioning.stdout is not None
                watchdog = threading.Timer(60, provisioning.kill)  # never a hang
                watchdog.start()
                seen = ""
                try:
                    while "NATS not ready" not in seen and provisioning.poll() is None:
                        seen += provisioning.stdout.readline()  # nats-py's errors come too
                finally:
                    watchdog.cancel()
                assert "NATS not ready" in seen, seen
                start_servers(others, secrets)
                rest, _ = provisioning.communicate(timeout=90)
                output = seen + rest
            finally:
                provisioning.kill()
    finally:
        for node in nodes:
            node.kill()
    assert provisioning.returncode == 0, output


async def test_a_provisioning_run_again_aligns_the_max_message_size(
    nats_cluster: list[ClusterNode], secrets: Secrets, provisioned: None, operator: Client
) -> None:
    """The Job is run again after CERTIBLOC_NATS_MAX_PAYLOAD changed: the streams follow."""
    client = await as_provisioner(nats_cluster, secrets)
    js = operator.jetstream()
    try:
        await provision(
            client.jetstream(),
            Topology(replicas=3, max_msg_size=MAX_PAYLOAD // 2, partitions=PARTITIONS),
        )
        for stream in STREAMS.values():
            assert (await js.stream_info(stream)).config.max_msg_size == MAX_PAYLOAD // 2
    finally:
        await provision(client.jetstream(), Topology(replicas=3, partitions=PARTITIONS))
        await client.close()
    for stream in STREAMS.values():
        assert (await js.stream_info(stream)).config.max_msg_size == MAX_PAYLOAD


async def test_a_provisioning_run_again_aligns_the_replicas(
    nats_cluster: list[ClusterNode], secrets: Secrets, provisioned: None, operator: Client
) -> None:
    """The Job is run again after CERTIBLOC_NATS_REPLICAS changed: the streams follow."""
    client = await as_provisioner(nats_cluster, secrets)
    js = operator.jetstream()
    try:
        await provision(client.jetstream(), Topology(replicas=1, partitions=PARTITIONS))
        for stream in expected_streams():
            assert (await js.stream_info(stream)).config.num_replicas == 1, stream
    finally:
        await provision(client.jetstream(), Topology(replicas=3, partitions=PARTITIONS))
        await client.close()
        for stream in expected_streams():  # and back: the other tests' cluster is R3
            await eventually(
                functools.partial(placed_on_all, js, stream), 15, f"{stream} on three servers"
            )


async def placed_on_all(js: JetStreamContext, stream: str) -> bool:
    info = await js.stream_info(stream)
    return info.config.num_replicas == 3 and placed_on(info.cluster) == set(NATS_NODES)


@pytest.mark.parametrize("service", natsauth.SERVICES)
async def test_a_service_key_reads_and_publishes_its_own_but_changes_no_stream_or_consumer(
    nats_cluster: list[ClusterNode],
    secrets: Secrets,
    provisioned: None,
    operator: Client,
    service: str,
) -> None:
    """A stream's configuration can source another stream or capture any subject: a service
    allowed to create or update one could read another's dead letters or replies. So a
    service reads its streams and binds to its consumers; it creates, updates and deletes
    nothing."""
    own = STREAMS[service]
    other = next(s for s in natsauth.SERVICES if s != service)
    client, errors = await as_user(nats_cluster, secrets, service)
    try:
        js = client.jetstream(timeout=0.5)
        # What it may do: read its stream's state and messages, publish its events, look up
        # the consumers provisioned for it.
        info = await js.stream_info(own)
        assert info.config.num_replicas == 3 and info.config.subjects == stream_subjects(service)
        ack = await js.publish(f"certibloc.{service}.deploy-check.v1", b"{}", timeout=5)
        assert ack.stream == own
        assert (await js.get_msg(own, ack.seq)).subject == f"certibloc.{service}.deploy-check.v1"
        for producer, durable in durables(service):
            assert (await js.consumer_info(STREAMS[producer], durable)).name == durable

        # What it may not: create a stream (even its own, as services once did), widen its
        # own, delete it, create a consumer, or re-create its own durable differently.
        refusals: dict[str, Callable[[], Awaitable[object]]] = {
            f"$JS.API.STREAM.CREATE.{own}": lambda: js.add_stream(
                StreamConfig(name=own, subjects=stream_subjects(service))
            ),
            f"$JS.API.STREAM.CREATE.{own}_COPY": lambda: js.add_stream(
                StreamConfig(name=f"{own}_COPY", sources=[StreamSource(name=STREAMS[other])])
            ),
            f"$JS.API.STREAM.UPDATE.{own}": lambda: js.update_stream(
                StreamConfig(
                    name=own,
                    subjects=[*stream_subjects(service), f"{natsauth.inbox_prefix(other)}.>"],
                )
            ),
            f"$JS.API.STREAM.DELETE.{own}": lambda: js.delete_stream(own),
            f"$JS.API.CONSUMER.DURABLE.CREATE.{own}.spy": lambda: js.add_consumer(
                own, durable_name="spy"
            ),
            f"$JS.API.CONSUMER.CREATE.{own}.spy": lambda: js.add_consumer(
                own, ConsumerConfig(name="spy")
            ),
        }
        for producer, durable in durables(service):
            refusals[f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAMS[producer]}.{durable}"] = (
                functools.partial(
                    js.add_consumer, STREAMS[producer], durable_name=durable, ack_wait=1.0
                )
            )
        for refused in refusals.values():
            with pytest.raises((nats.errors.Error, asyncio.TimeoutError)):
                await refused()
        await refused_all(errors, list(refusals))
    finally:
        await client.close()

    admin = operator.jetstream()
    after = await admin.stream_info(own)
    assert after.config.subjects == stream_subjects(service) and after.created == info.created
    assert f"{own}_COPY" not in {s.config.name for s in await admin.streams_info()}
    with pytest.raises(NotFoundError):
        await admin.consumer_info(own, "spy")
    for producer, durable in durables(service):
        assert (await admin.consumer_info(STREAMS[producer], durable)).config.ack_wait == ACK_WAIT


async def test_cluster_refuses_an_anonymous_client(
    nats_cluster: list[ClusterNode], secrets: Secrets
) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(
            tls_urls(nats_cluster)[0],
            tls=secrets.client_tls(),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
        )


async def test_cluster_refuses_an_unknown_key(
    nats_cluster: list[ClusterNode], secrets: Secrets
) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(
            tls_urls(nats_cluster)[0],
            nkeys_seed_str=natsauth.new_seed().decode(),
            tls=secrets.client_tls(),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
        )


def plaintext_session(port: int, seed: Path) -> bytes:
    """Speak the NATS protocol without TLS: read INFO, send CONNECT and PING; what comes back
    before the server closes the connection (or a 5 s deadline)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        info = raw.recv(4096)
        assert info.startswith(b"INFO ")
        assert json.loads(info[5:].strip())["tls_required"] is True
        key = natsauth.public_key(seed.read_bytes().strip())
        raw.sendall(b"CONNECT " + json.dumps({"nkey": key, "verbose": False}).encode())
        raw.sendall(b"\r\nPING\r\n")
        received = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = raw.recv(4096)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
        return received


async def test_cluster_refuses_a_plaintext_client(
    nats_cluster: list[ClusterNode], secrets: Secrets
) -> None:
    # At the protocol level: the server wants a TLS handshake, and closes on plaintext.
    answer = plaintext_session(nats_cluster[0].client_port, secrets.seed("registry"))
    assert b"PONG" not in answer and b"+OK" not in answer
    # And a client that does not trust the CA (the system's trust store) never gets in.
    with pytest.raises(Exception, match=r"(?i)certificate"):
        await nats.connect(
            f"nats://127.0.0.1:{nats_cluster[0].client_port}",
            nkeys_seed=str(secrets.seed("registry")),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
        )


async def test_a_service_key_cannot_publish_another_services_events(
    nats_cluster: list[ClusterNode], secrets: Secrets, provisioned: None, operator: Client
) -> None:
    # As the service itself connects: services.runtime.nats.connect with tls:// and the CA.
    service = await connect(
        ",".join(tls_urls(nats_cluster)),
        "notifications",
        seed_file=secrets.seed("notifications"),
        inbox_prefix=natsauth.inbox_prefix("notifications"),
        tls_ca_file=secrets.ca,
    )
    try:
        js = service.jetstream(timeout=2)
        ack = await js.publish("certibloc.notifications.notification-sent.v1", b"{}")
        assert ack.stream == STREAMS["notifications"]
    finally:
        await service.close()

    forger, errors = await as_user(nats_cluster, secrets, "notifications")
    try:
        await forger.publish("certibloc.registry.bloc-validated.v1", b"{}")
        await forger.flush()
        await refused_all(errors, ["certibloc.registry.bloc-validated.v1"])
    finally:
        await forger.close()
    with pytest.raises(NotFoundError):  # the forged event never reached the registry's stream
        await operator.jetstream().get_last_msg(
            STREAMS["registry"], "certibloc.registry.bloc-validated.v1"
        )


def test_cluster_refuses_a_route_without_a_certificate_from_the_ca(
    nats_cluster: list[ClusterNode], secrets: Secrets, tmp_path: Path
) -> None:
    """A server that trusts the cluster's CA but presents a certificate from another CA
    dials nats-1's route port: nats-1 refuses it, and the cluster keeps its three servers."""
    rogue_tls = tmp_path / "rogue-tls"
    nats_tls.ensure(rogue_tls, ["rogue"])
    first = nats_cluster[0]
    config = tmp_path / "rogue.conf"
    config.write_text(
        "\n".join(
            [
                'server_name: "rogue"',
                f'listen: "127.0.0.1:{free_port()}"',
                "cluster {",
                "  name: certibloc",
                f'  listen: "127.0.0.1:{free_port()}"',
                f'  tls {{ cert_file: "{rogue_tls}/tls.crt", key_file: "{rogue_tls}/tls.key",'
                f' ca_file: "{secrets.ca}", verify: true, timeout: 2 }}',
                f"  routes: [ nats-route://127.0.0.1:{first.cluster_port} ]",
                "}",
                "",
            ]
        )
    )
    first_log = first.store / "nats.log"
    refusals = first_log.read_text().count("unknown authority")
    with (tmp_path / "rogue.log").open("wb") as out:
        rogue = subprocess.Popen(
            [str(BIN / "nats-server"), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: first_log.read_text().count("unknown authority") > refusals)
        for node in nats_cluster:
            routes = {r.get("remote_name") for r in node.monitor("routez").get("routes", [])}
            assert routes == set(NATS_NODES) - {node.name}, routes
    finally:
        rogue.kill()
        rogue.wait(timeout=10)
