"""NATS connection and idempotent creation of JetStream streams and durable consumers."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from contracts.subjects import stream_subjects

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_SECONDS = 120.0


async def connect(url: str, name: str) -> Client:
    """Connect with unbounded reconnects: a NATS restart must never kill a service."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error": str(exc)})

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
    )


async def ensure_stream(js: JetStreamContext, stream: str, service: str, replicas: int) -> None:
    """Create the producing service's stream, or align its subjects. Safe to call at every start."""
    config = StreamConfig(
        name=stream,
        subjects=stream_subjects(service),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", extra={"stream": stream})
        return
    if sorted(info.config.subjects or []) != sorted(config.subjects or []):
        await js.update_stream(config)


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    *,
    ack_wait: float = 5.0,
    max_ack_pending: int = 5000,
) -> None:
    """Create a durable pull consumer that sees the whole stream, once; later calls are no-ops."""
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
        ),
    )
    log.info("consumer created", extra={"stream": stream, "durable": durable})
