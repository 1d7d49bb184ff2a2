"""Lifecycle shared by the services: connect to NATS with the service's own credentials,
ensure its stream, run its outbox relay, its consumers and any other worker for as long as
the HTTP app lives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from tenacity import (
    AsyncRetrying,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
)

from contracts.subjects import STREAMS, source_for
from services.runtime import metrics as prometheus
from services.runtime.consumer import ConsumerSpec, EventConsumer
from services.runtime.metrics import Metrics, MetricsServer, serve_metrics
from services.runtime.nats import MissingCredentials, connect
from services.runtime.natsauth import inbox_prefix
from services.runtime.outbox import OutboxGuard, Translator
from services.runtime.relay import OutboxRelay
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
    consumers: Sequence[ConsumerSpec] = ()
    workers: list[Worker] = field(default_factory=list)  # run beside the consumers
    metrics: Metrics = field(default_factory=Metrics)
    nats: Client | None = None
    relay: OutboxRelay | None = None
    running_consumers: list[EventConsumer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    guard: OutboxGuard = field(init=False)
    metrics_server: MetricsServer | None = None

    def __post_init__(self) -> None:
        name = self.settings.service_name
        # Nothing the relay could not publish is ever stored: checked at every save.
        self.guard = OutboxGuard(
            self.translate, source_for(name), STREAMS[name], self.settings.nats_max_payload
        )
        self.app.outbox_guard = self.guard

    async def start(self) -> None:
        name = self.settings.service_name
        if not self.metrics.multiprocess:  # multiprocess mode: cli.serve's process serves them
            self.metrics_server = serve_metrics(
                self.settings.metrics_host, self.settings.metrics_bind_port, self.metrics.registry
            )
        async for attempt in AsyncRetrying(
            retry=retry_if_not_exception_type(MissingCredentials),
            stop=stop_after_delay(60),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        ):
            with attempt:
                self.nats = await connect(
                    self.settings.nats_url,
                    name,
                    seed_file=self.settings.nats_seed_file,
                    inbox_prefix=inbox_prefix(name),
                    tls_ca_file=self.settings.nats_tls_ca_file,
                )
        assert self.nats is not None
        self._check_max_payload(self.nats.max_payload)
        js = self.nats.jetstream()
        stream = STREAMS[name]
        # Streams are provisioned (services.runtime.provision), not created here: the relay
        # waits for its stream, and says so if it does not come (stuck, /readyz red).
        with contextlib.suppress(Exception):
            self._check_max_payload((await js.stream_info(stream)).config.max_msg_size or 0)
        self.relay = OutboxRelay(
            self.app,
            self.translate,
            js,
            source=source_for(name),
            stream=stream,
            batch_size=self.settings.relay_batch,
            idle_seconds=self.settings.relay_idle_seconds,
            stuck_after=self.settings.stuck_seconds,
            partitions=self.settings.partitions,
            metrics=self.metrics,
        )
        if self.settings.runs_relay:
            self._tasks.append(asyncio.create_task(self.relay.run(self._stop), name="relay"))
        if self.settings.consumers_enabled:
            for spec in self.consumers:
                for partition in self.settings.assigned_partitions:
                    consumer = EventConsumer(
                        self.app,
                        spec,
                        js,
                        service=name,
                        partition=partition,
                        partitions=self.settings.partitions,
                        batch_size=self.settings.consumer_batch,
                        max_payload=self.nats.max_payload,
                        stuck_after=self.settings.stuck_seconds,
                        metrics=self.metrics,
                    )
                    self.running_consumers.append(consumer)
                    self._tasks.append(asyncio.create_task(consumer.run(self._stop)))
            for worker in self.workers:
                self._tasks.append(asyncio.create_task(worker(js, self._stop)))
        log.info("service started", extra={"nats": self.settings.nats_url})

    def _check_max_payload(self, bus_max: int) -> None:
        """The server's max_payload, or the stream's max_msg_size, when smaller than the
        setting: nothing larger may be stored."""
        if 0 < bus_max < self.guard.limit:
            log.error(
                "the bus accepts smaller messages than configured: using its limit",
                extra={"bus_max": bus_max, "configured": self.guard.limit},
            )
            self.guard.limit = bus_max

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
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.stop)
            self.metrics_server = None
        if self.metrics.multiprocess:
            prometheus.process_exited()

    # --- readiness (each answers None when fine, else why not, in French) ---------------

    async def nats_ready(self) -> str | None:
        if self.nats is not None and self.nats.is_connected:
            return None
        return "NATS injoignable"

    async def store_ready(self) -> str | None:
        try:
            await asyncio.to_thread(self.app.is_reachable)
        except Exception:
            return "stockage d'événements injoignable"
        return None

    async def relay_ready(self) -> str | None:
        if self.relay is None or not self.settings.runs_relay:
            return None
        return self.relay.problem()

    async def consumers_ready(self) -> str | None:
        problems = [p for c in self.running_consumers if (p := c.problem())]
        return " ; ".join(problems) or None

    @property
    def readiness(self) -> list[Callable[[], Coroutine[Any, Any, str | None]]]:
        return [self.store_ready, self.nats_ready, self.relay_ready, self.consumers_ready]

    @asynccontextmanager
    async def lifespan(self, _: object) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
