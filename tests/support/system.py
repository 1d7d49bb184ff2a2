"""The whole system as separate OS processes, as ``make run`` starts it: nats-server, the dev
SMTP sink, the registry, attestations and notifications services. Used by the end-to-end and
fault tests and by the end-to-end benchmark; any process can be killed (SIGKILL) and
restarted on the same port and store."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.notifications.sink import message_count
from tests.support.processes import (
    NatsServer,
    Postgres,
    ServiceProcess,
    Stoppable,
    free_port,
    port_open,
    registry_process,
    wait_for,
)

SERVICES = ("registry", "attestations", "notifications")
DOWNLOAD_SECRET = "5e" * 32  # this test deployment's shared download-token secret
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"  # where the tests' webhook receivers listen
# The test fixtures' extra referentials (a second, invented certification), given to every
# service process as a deployment gives its own: CERTIBLOC_REFERENTIALS_DIR.
FIXTURE_REFERENTIALS = Path(__file__).parents[1] / "data" / "referentials"


@dataclass
class SmtpSinkProcess(Stoppable):
    """``python -m services.notifications smtp-sink``: one .eml per Message-ID in ``mail_dir``."""

    mail_dir: Path
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.notifications", "smtp-sink", "--port", str(self.port)],
            env={**os.environ, "NOTIFICATIONS_MAIL_DIR": str(self.mail_dir)},
            stdout=out,
            stderr=out,
        )
        wait_for(lambda: port_open(self.port), timeout=20)

    def mails(self) -> int:
        return message_count(self.mail_dir)


@dataclass
class System:
    work: Path
    postgres: Postgres | None = None  # None: each service on its own SQLite file
    settings: dict[str, str] = field(default_factory=dict)  # extra env for every service
    partitions: int = 1  # of every stream
    referentials_dir: Path | None = FIXTURE_REFERENTIALS  # CERTIBLOC_REFERENTIALS_DIR
    # Consumer replicas of a service (attestations, notifications): each its own process on
    # its own port, sharing the service's store, applying every partition p with
    # p % count == its index; only the first runs the relay (the default).
    # Named "<service>#<index>".
    replicas: dict[str, int] = field(default_factory=dict)
    nats: NatsServer = field(init=False)
    sink: SmtpSinkProcess = field(init=False)
    services: dict[str, ServiceProcess] = field(init=False, default_factory=dict)
    key: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(store=self.work / "nats", partitions=self.partitions)
        self.sink = SmtpSinkProcess(self.work / "mail", self.work / "smtp-sink.log")

    @property
    def mail_dir(self) -> Path:
        return self.sink.mail_dir

    def url(self, service: str) -> str:
        return self.services[service].url

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def start(self) -> None:
        self.nats.start()
        self.sink.start()
        ports = {name: free_port() for name in ("attestations", "notifications")}
        common = {
            **self.nats.env,  # its URL and the services' NKeys
            "CERTIBLOC_LOG_LEVEL": "WARNING",
            "CERTIBLOC_DOWNLOAD_TOKEN_SECRET": DOWNLOAD_SECRET,
            "ATTESTATIONS_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['attestations']}",
            "NOTIFICATIONS_ATTESTATIONS_URL": f"http://127.0.0.1:{ports['attestations']}",
            "NOTIFICATIONS_SMTP_PORT": str(self.sink.port),
            "NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,
            **(
                {"CERTIBLOC_REFERENTIALS_DIR": str(self.referentials_dir)}
                if self.referentials_dir is not None
                else {}
            ),
            **self.settings,
        }
        for name in SERVICES:
            if self.postgres is not None:
                schema = self.postgres.new_schema(f"{self.work.name}_{name}".lower())
                for key, value in self.postgres.env(schema).items():
                    common[f"{name.upper()}_{key}"] = value
        registry, self.key = registry_process(self.work, self.nats.url, **common)
        self.services["registry"] = registry
        for name in ("attestations", "notifications"):
            count = self.replicas.get(name, 1)
            for index in range(count):
                port = ports[name] if index == 0 else free_port()
                prefix = name.upper()
                env = {
                    **common,
                    "CERTIBLOC_VAR_DIR": str(self.work / name),
                    f"{prefix}_PORT": str(port),
                    f"{prefix}_REPLICA_INDEX": str(index),
                    f"{prefix}_REPLICA_COUNT": str(count),
                }
                label = name if index == 0 else f"{name}#{index}"
                self.services[label] = ServiceProcess(
                    f"services.{name}", port, env, self.work / f"{label}.log"
                )
        for process in self.services.values():
            process.start()

    def replicas_of(self, service: str) -> list[ServiceProcess]:
        return [p for label, p in self.services.items() if label.split("#")[0] == service]

    def kill(self, name: str) -> None:
        """SIGKILL one process: a service, ``nats`` or ``smtp``."""
        self._process(name).kill()

    def restart(self, name: str) -> None:
        self._process(name).start()

    def stop(self) -> None:
        for process in self.services.values():
            process.stop()
        self.sink.stop()
        self.nats.stop()

    def _process(self, name: str) -> NatsServer | SmtpSinkProcess | ServiceProcess:
        if name == "nats":
            return self.nats
        if name == "smtp":
            return self.sink
        return self.services[name]

    def __enter__(self) -> System:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
