"""Settings shared by every service, read from the environment (pydantic-settings).

Persistence is configured with eventsourcing's own variables (``PERSISTENCE_MODULE``,
``SQLITE_DBNAME``, ``POSTGRES_*``, optionally prefixed with the application name, e.g.
``REGISTRY_SQLITE_DBNAME``); when none is set a service uses ``<var_dir>/<service>.sqlite``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.secrets import store_cipher_env

PERSISTENCE_KEYS = (
    "PERSISTENCE_MODULE",
    "SQLITE_DBNAME",
    "SQLITE_LOCK_TIMEOUT",
    "POSTGRES_DBNAME",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_SCHEMA",
    "POSTGRES_POOL_SIZE",
    "POSTGRES_MAX_OVERFLOW",
    "POSTGRES_LOCK_TIMEOUT",
)


METRICS_PORT_OFFSET = 1000  # default metrics port: the public one + this


class ServiceSettings(BaseSettings):
    """Base settings. Shared ones are read from ``CERTIBLOC_*``; each service subclasses this
    with its own ``env_prefix`` (``REGISTRY_PORT``, ``ATTESTATIONS_PORT``...)."""

    model_config = SettingsConfigDict(
        env_prefix="CERTIBLOC_", extra="ignore", populate_by_name=True
    )

    service_name: str = "service"
    var_dir: Path = Field(
        default=Path("var"),
        validation_alias=AliasChoices("CERTIBLOC_VAR_DIR", "var_dir"),
        description="Local state: stores, keys, mail.",
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4250",
        validation_alias=AliasChoices("CERTIBLOC_NATS_URL", "nats_url"),
    )
    nats_credentials_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("CERTIBLOC_NATS_CREDENTIALS_DIR", "nats_credentials_dir"),
        description="Directory holding this service's NKey seed, <service>.nk "
        "(default: <var_dir>/nats/credentials, where make run creates them).",
    )
    nats_tls_ca_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("CERTIBLOC_NATS_TLS_CA_FILE", "nats_tls_ca_file"),
        description="CA certificate the NATS servers' certificates are checked against (TLS).",
    )
    nats_max_payload: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        validation_alias=AliasChoices("CERTIBLOC_NATS_MAX_PAYLOAD", "nats_max_payload"),
        description="The bus's max_payload (bytes): no request may record an event whose "
        "message would exceed it. The server's own setting must be at least this.",
    )
    partitions: int = Field(
        default=1,
        ge=1,
        le=256,
        validation_alias=AliasChoices("CERTIBLOC_PARTITIONS", "partitions"),
        description="Partitions of every stream (lanes applied independently), the same for "
        "every service and fixed for a deployment's life.",
    )
    replica_index: int = Field(
        default=0,
        ge=0,
        description="This process's index among the service's consumer replicas: it applies "
        "the partitions p with p % replica_count == replica_index.",
    )
    replica_count: int = Field(default=1, ge=1, le=256)
    nats_stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=AliasChoices("CERTIBLOC_NATS_REPLICAS", "nats_stream_replicas"),
    )
    store_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("CERTIBLOC_STORE_KEY_FILE", "store_key_file"),
        description="File holding the event store's encryption key (base64, 32 bytes; "
        "<SERVICE>_STORE_KEY_FILE wins for one service). It must exist. Unset: "
        "<var_dir>/keys/<service>-store.key, created on first start (mode 0600).",
    )
    log_level: str = Field(
        default="INFO", validation_alias=AliasChoices("CERTIBLOC_LOG_LEVEL", "log_level")
    )
    host: str = "127.0.0.1"
    port: int = 8100
    workers: int = Field(default=1, ge=1, le=16, description="uvicorn worker processes")
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address of the internal Prometheus endpoint (GET /metrics); never the "
        "public port, which answers 404 there.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description=f"Port of the internal Prometheus endpoint. Unset: the public port + "
        f"{METRICS_PORT_OFFSET} (9101, 9102, 9103); 0: no metrics endpoint.",
    )
    hsts_seconds: int = Field(
        default=0,
        ge=0,
        validation_alias=AliasChoices("CERTIBLOC_HSTS_SECONDS", "hsts_seconds"),
        description="Strict-Transport-Security max-age sent on every response; 0 (default): "
        "none. Only behind a TLS-terminating proxy that does not send it itself.",
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    relay_enabled: bool | None = Field(
        default=None,
        description="Run the outbox relay in this process (off: another does). Unset: the "
        "replica of index 0 runs it, the others do not (one relay per store: it keeps the "
        "chain of every partition).",
    )
    consumers_enabled: bool = Field(
        default=True, description="Run the JetStream consumers in this process."
    )
    relay_batch: int = Field(default=100, ge=1)
    relay_idle_seconds: float = Field(default=0.05, gt=0)
    stuck_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A relay or a consumer that cannot get past one position this long "
        "reports itself stuck (log, metric, red /readyz); a relay whose message the bus "
        "refuses does at once.",
    )
    consumer_batch: int = Field(default=500, ge=1, description="Messages fetched at once.")

    @property
    def runs_relay(self) -> bool:
        return self.replica_index == 0 if self.relay_enabled is None else self.relay_enabled

    @property
    def assigned_partitions(self) -> list[int]:
        """The partitions this replica's consumers apply (static assignment)."""
        if self.replica_index >= self.replica_count:
            raise ValueError("replica_index must be below replica_count")
        return [p for p in range(self.partitions) if p % self.replica_count == self.replica_index]

    @property
    def metrics_bind_port(self) -> int | None:
        """Where the internal metrics endpoint listens; None: nowhere."""
        port = self.port + METRICS_PORT_OFFSET if self.metrics_port is None else self.metrics_port
        return port if 0 < port <= 65535 else None

    @property
    def nats_seed_file(self) -> Path:
        directory = self.nats_credentials_dir or self.var_dir / "nats" / "credentials"
        return directory / f"{self.service_name}.nk"

    def eventsourcing_env(self, app_name: str) -> dict[str, str]:
        """The environment handed to the eventsourcing Application.

        Variables set in the process environment win; SQLite under ``var_dir`` is the default.
        Every durable store is encrypted at rest (eventsourcing's AES-GCM cipher) with the key
        of ``store_key_path``; an in-memory one (``eventsourcing.popo``) is not.
        """
        env = {k: v for k, v in os.environ.items() if _is_persistence_key(k, app_name)}
        prefixed = app_name.upper() + "_PERSISTENCE_MODULE"
        if "PERSISTENCE_MODULE" not in env and prefixed not in env:
            self.var_dir.mkdir(parents=True, exist_ok=True)
            env["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
            env.setdefault("SQLITE_DBNAME", str(self.var_dir / f"{self.service_name}.sqlite"))
        module = env.get(prefixed, env.get("PERSISTENCE_MODULE", ""))
        if module != "eventsourcing.popo":
            path, provided = self.store_key_path(app_name)
            cipher = store_cipher_env(path, create=not provided)
            # Also under the application's prefix, which eventsourcing reads first: a stray
            # <APP>_CIPHER_KEY in the environment cannot replace the key nor turn it off.
            env.update(cipher | {f"{app_name.upper()}_{k}": v for k, v in cipher.items()})
        return env

    def store_key_path(self, app_name: str) -> tuple[Path, bool]:
        """The store key file, and whether an operator named it (then it must exist)."""
        own = os.environ.get(app_name.upper() + "_STORE_KEY_FILE")
        if own:
            return Path(own), True
        if self.store_key_file is not None:
            return self.store_key_file, True
        return self.var_dir / "keys" / f"{self.service_name}-store.key", False


def _is_persistence_key(key: str, app_name: str) -> bool:
    prefix = app_name.upper() + "_"
    bare = key.removeprefix(prefix)
    return bare in PERSISTENCE_KEYS
