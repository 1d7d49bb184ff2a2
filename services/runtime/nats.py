"""NATS connection and idempotent creation of JetStream streams and durable consumers."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from contracts.subjects import deadletter_stream, deadletter_subjects, stream_subjects

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_SECONDS = 120.0


def server_urls(url: str) -> list[str]:
    """``CERTIBLOC_NATS_URL`` as a list: one URL, or a cluster's nodes separated by commas."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("no NATS server URL given")
    return servers


class MissingCredentials(RuntimeError):
    """The service's NKey seed file is not where its settings say."""


def require_credentials(seed_file: Path) -> None:
    if not seed_file.is_file():
        raise MissingCredentials(
            f"no NATS credentials at {seed_file}: `make run` creates them under var/; "
            "elsewhere set CERTIBLOC_NATS_CREDENTIALS_DIR (deploy/README.md)"
        )


async def connect(
    url: str,
    name: str,
    *,
    seed_file: Path,
    inbox_prefix: str,
    tls_ca_file: Path | None = None,
) -> Client:
    """Connect with the service's own NKey, and unbounded reconnects: a NATS restart must
    never kill a service.

    ``url`` may list several servers of a cluster (``nats://a:4222,nats://b:4222``). The first
    connection goes to any of them that answers (in random order, which spreads the services
    over the nodes); once connected the client also learns the cluster's other nodes from the
    server, and moves to one of them when its node goes away. ``tls://`` URLs (or a CA file)
    connect over TLS, checking the server's certificate against ``tls_ca_file`` when given,
    else the system's trust store. Replies come to ``inbox_prefix``, the only subjects the
    service may subscribe to.
    """
    require_credentials(seed_file)
    tls: ssl.SSLContext | None = None
    if tls_ca_file is not None or any(u.startswith("tls://") for u in server_urls(url)):
        tls = ssl.create_default_context(
            cafile=str(tls_ca_file) if tls_ca_file is not None else None
        )

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error": str(exc)})

    client: Client | None = None

    async def on_disconnected() -> None:
        if client is not None and not client.is_closed:  # lost, not closed by us
            log.warning("nats disconnected; reconnecting", extra={"connection": name})

    async def on_reconnected() -> None:
        server = client.connected_url if client is not None else None
        log.warning(
            "nats reconnected",
            extra={"connection": name, "server": server.netloc if server else None},
        )

    client = await nats.connect(
        server_urls(url),
        name=name,
        nkeys_seed=str(seed_file),
        inbox_prefix=inbox_prefix,
        tls=tls,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    return client


async def ensure_stream(
    js: JetStreamContext,
    stream: str,
    service: str,
    replicas: int,
    *,
    max_msg_size: int | None = None,
    subjects: list[str] | None = None,
    max_bytes: int | None = None,
) -> None:
    """Create the producing service's stream, or align its subjects and size limits. Safe to
    call at every start."""
    config = StreamConfig(
        name=stream,
        subjects=subjects or stream_subjects(service),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_msg_size=max_msg_size,
        max_bytes=max_bytes,
        discard=DiscardPolicy.OLD if max_bytes else None,
    )
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", extra={"stream": stream})
        return
    if (
        sorted(info.config.subjects or []) != sorted(config.subjects or [])
        or info.config.num_replicas != replicas
        or (max_msg_size is not None and info.config.max_msg_size != max_msg_size)
        or (max_bytes is not None and info.config.max_bytes != max_bytes)
    ):
        await js.update_stream(config)


DEADLETTER_MAX_BYTES = 1024**3  # then the oldest go: copies, the originals stay upstream


async def ensure_deadletter_stream(js: JetStreamContext, service: str, replicas: int) -> None:
    """The consuming service's dead-letter stream: bounded (``DEADLETTER_MAX_BYTES``, the
    oldest dropped first), so a flood of bad messages cannot fill the servers' disks."""
    await ensure_stream(
        js,
        deadletter_stream(service),
        service,
        replicas,
        subjects=deadletter_subjects(service),
        max_bytes=DEADLETTER_MAX_BYTES,
    )


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    *,
    ack_wait: float = 5.0,
    max_ack_pending: int = 5000,
    filter_subject: str | None = None,
) -> None:
    """Create a durable pull consumer that sees the whole stream (or the subjects of
    ``filter_subject``: one partition), once; later calls are no-ops."""
    try:
        await js.consumer_info(stream, durable)
        return
    except NotFoundError:
        pass
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            max_deliver=-1,
            max_ack_pending=max_ack_pending,
            filter_subject=filter_subject,
        ),
    )
    log.info("consumer created", extra={"stream": stream, "durable": durable})
