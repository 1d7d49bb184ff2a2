"""Lifecycle shared by the services: connect to NATS, ensure the stream, run the outbox relay
(and consumers) for as long as the HTTP app lives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from contracts.subjects import STREAMS, source_for
from services.runtime import metrics as prometheus
from services.runtime.metrics import Metrics
from services.runtime.nats import connect, ensure_stream
from services.runtime.relay import OutboxRelay, Translator
from services.runtime.settings import ServiceSettings
from services.runtime.store import ServiceApplication

log = logging.getLogger(__name__)

Worker = Callable[[JetStreamContext, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class ServiceRuntime:
    """What a running service holds: its store, its NATS link, its relay and workers."""

    settings: ServiceSettings
    app: ServiceApplication
    translate: Translator
    workers: list[Worker] = field(default_factory=list)
    # (stream, producing service) this service consumes; created if the producer has not yet,
    # with the producer's own configuration, so start-up order does not matter.
    upstream_streams: list[tuple[str, str]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    nats: Client | None = None
    relay: OutboxRelay | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        name = self.settings.service_name
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            stop=stop_after_delay(60),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        ):
            with attempt:
                self.nats = await connect(self.settings.nats_url, name)
        assert self.nats is not None
        js = self.nats.jetstream()
        stream = STREAMS[name]
        await ensure_stream(js, stream, name, self.settings.nats_stream_replicas)
        for upstream, producer in self.upstream_streams:
            await ensure_stream(js, upstream, producer, self.settings.nats_stream_replicas)
        self.relay = OutboxRelay(
            self.app,
            self.translate,
            js,
            source=source_for(name),
            stream=stream,
            batch_size=self.settings.relay_batch,
            idle_seconds=self.settings.relay_idle_seconds,
            metrics=self.metrics,
        )
        if self.settings.relay_enabled:
            self._tasks.append(asyncio.create_task(self.relay.run(self._stop), name="relay"))
        if self.settings.consumers_enabled:
            for worker in self.workers:
                self._tasks.append(asyncio.create_task(worker(js, self._stop)))
        log.info("service started", extra={"nats": self.settings.nats_url})

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        if self.nats is not None and not self.nats.is_closed:
            await self.nats.close()
        self.app.close()
        if self.metrics.multiprocess:
            prometheus.process_exited()

    async def nats_ready(self) -> bool:
        return self.nats is not None and self.nats.is_connected

    async def store_ready(self) -> bool:
        return await asyncio.to_thread(self.app.is_reachable)

    @asynccontextmanager
    async def lifespan(self, _: object) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
