"""Outbox relay: publishes a service's own notification log to its JetStream stream.

Events leave a service only this way (no dual writes). Each stored notification is translated
into zero or more contract events; each is published with ``Nats-Msg-Id`` =
``<source>:<notification id>:<index>`` so a relay that restarts and republishes is deduplicated
by JetStream, and carries ``position``/``previous`` so consumers can detect gaps.

The relay's position (the position of the last event it got acknowledged) is stored as a
tracking record in the service's own database, after the stream acknowledged the batch.

The trace context a stored event was stamped with (``services.runtime.tracing``) goes out as
the CloudEvent's ``traceparent``/``tracestate`` and as the same NATS headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from eventsourcing.persistence import IntegrityError, Tracking
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from contracts.envelope import message_position, notification_of
from contracts.subjects import subject_for
from services.runtime import tracing
from services.runtime.metrics import Metrics
from services.runtime.store import ServiceApplication

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One contract event to publish: its model and the CloudEvents ``subject``."""

    event: BaseModel
    event_type: str
    subject: str | None = None


Translator = Callable[[Any], Sequence[Outgoing]]


@dataclass(frozen=True)
class _Prepared:
    subject: str
    payload: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class _Batch:
    messages: list[_Prepared]
    scanned: int
    last_notification_id: int
    last_position: int


class OutboxRelay:
    def __init__(
        self,
        app: ServiceApplication,
        translate: Translator,
        js: JetStreamContext,
        *,
        source: str,
        stream: str,
        batch_size: int = 100,
        idle_seconds: float = 0.05,
        publish_timeout: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.translate = translate
        self.js = js
        self.source = source
        self.stream = stream
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.publish_timeout = publish_timeout
        self.tracking_name = f"relay:{stream}"
        self.published_total = 0
        self.instruments = metrics.relay(stream) if metrics is not None else None
        self._position: int | None = None  # last position acknowledged and stored
        self._prepared_position = 0  # last position prepared (may be ahead while publishing)
        self._cursor = 0  # last notification id scanned
        self._skip_through = 0  # positions up to this one are on the stream already
        self._recorded_through = 0  # while catching up: our tracking already holds up to here
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set. The next batch is prepared while the previous one is
        being published; failures back off and resume from the stored position."""
        self._loop = asyncio.get_running_loop()
        self.app.on_saved(self._signal)
        backoff = 0.1
        inflight: asyncio.Task[None] | None = None
        while not stop.is_set():
            try:
                if self._position is None:
                    await self._catch_up()
                batch = await asyncio.to_thread(self._prepare)
                if inflight is not None:
                    await inflight
                    inflight = None
                if batch is not None and batch.messages:
                    inflight = asyncio.create_task(self._deliver(batch))
                backoff = 0.1
            except Exception:
                log.exception("relay failed; resuming from the stored position")
                if inflight is not None:
                    inflight.cancel()
                    inflight = None
                self._position = None
                await _wait_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if batch is None or batch.scanned < self.batch_size:
                if inflight is not None:
                    continue  # collect its outcome first
                self._wake.clear()
                await _wait_first(stop, self._wake, self.idle_seconds)
        if inflight is not None:
            await asyncio.gather(inflight, return_exceptions=True)

    async def relay_once(self) -> int:
        """Publish the next batch of unpublished notifications; return how many were scanned."""
        if self._position is None:
            await self._catch_up()
        batch = await asyncio.to_thread(self._prepare)
        if batch is None:
            return 0
        if batch.messages:
            await self._deliver(batch)
        return batch.scanned

    async def position(self) -> int:
        if self._position is None:
            await asyncio.to_thread(self._load_position)
        assert self._position is not None
        return self._position

    # --- internals -----------------------------------------------------------------------

    async def _deliver(self, batch: _Batch) -> None:
        await self._publish(batch.messages)
        if batch.last_position <= self._recorded_through:
            self._position = batch.last_position  # catching up: recorded long ago
            self._count(batch)
            return
        try:
            await asyncio.to_thread(
                self.app.process_recorder.insert_tracking,
                Tracking(self.tracking_name, batch.last_position),
            )
        except IntegrityError:
            # Another relay of the same service (a second worker or replica) stored this
            # position or a later one: its publications were deduplicated, ours too. Re-read.
            self._position = None
            return
        self._position = batch.last_position
        self._count(batch)

    def _count(self, batch: _Batch) -> None:
        self.published_total += len(batch.messages)
        if self.instruments is not None:
            self.instruments.delivered(len(batch.messages), batch.last_position)

    async def _catch_up(self) -> None:
        """Resume from what the stream holds when it is behind our stored position.

        The stored position moves once JetStream acknowledged, but an acknowledgement is not a
        guarantee the message survives: a single server that crashes before its periodic fsync,
        or a stream deleted and recreated, loses messages we recorded as published. Consumers
        would then wait forever for a ``previous`` that never comes. Our own log is the source:
        we publish again from the stream's last position (JetStream drops ids it still has).
        """
        await asyncio.to_thread(self._load_position)
        assert self._position is not None
        info = await self.js.stream_info(self.stream)
        last = 0
        if info.state.messages:
            try:
                message = await self.js.get_msg(self.stream, seq=info.state.last_seq)
            except NotFoundError:  # removed meanwhile: publish everything again, it is safe
                message = None
            if message is not None:
                last = int(orjson.loads(message.data or b"{}").get("position", 0))
        if last < self._position:
            self._recorded_through = max(self._recorded_through, self._position)
            log.warning(
                "stream behind the relay's stored position: publishing again from the stream's",
                extra={"stream": self.stream, "stored": self._position, "stream_last": last},
            )
            self._position = self._prepared_position = self._skip_through = last
            # The stream may end inside a notification's events: scan that one again.
            self._cursor = max(notification_of(last) - 1, 0)

    def _signal(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def _load_position(self) -> None:
        stored = self.app.process_recorder.max_tracking_id(self.tracking_name) or 0
        self._position = self._prepared_position = stored
        if self.instruments is not None:
            self.instruments.position.set(stored)
        # Notifications after the last published event's one may have yielded nothing; they
        # are scanned again, which is harmless because translation is deterministic.
        self._cursor = notification_of(stored)

    def _prepare(self) -> _Batch | None:
        """Translate the next notifications; advances the in-memory cursor (not the stored
        position, which moves only once the stream acknowledged)."""
        if self._position is None:
            self._load_position()
        notifications = self.app.process_recorder.select_notifications(
            start=self._cursor, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return None
        previous = self._prepared_position
        messages: list[_Prepared] = []
        for notification in notifications:
            domain_event = self.app.mapper.to_domain_event(notification)
            timestamp = getattr(domain_event, "timestamp", None)
            traceparent, tracestate = tracing.stamped(domain_event)
            for index, out in enumerate(self.translate(domain_event)):
                position = message_position(notification.id, index)
                if position <= self._skip_through:
                    continue
                envelope = {
                    "specversion": "1.0",
                    "id": f"{notification.id}.{index}",
                    "source": self.source,
                    "type": out.event_type,
                    "subject": out.subject,
                    "time": timestamp,
                    "datacontenttype": "application/json",
                    "dataschema": f"urn:certibloc:schema:{out.event_type}",
                    "position": position,
                    "previous": previous,
                    "data": out.event.model_dump(mode="json"),
                }
                if traceparent:
                    envelope["traceparent"] = traceparent
                    if tracestate:
                        envelope["tracestate"] = tracestate
                messages.append(
                    _Prepared(
                        subject=subject_for(out.event_type),
                        payload=orjson.dumps(envelope),
                        headers={
                            "Nats-Msg-Id": f"{self.source}:{notification.id}:{index}",
                            **tracing.headers_of(traceparent, tracestate),
                        },
                    )
                )
                previous = position
        self._cursor = notifications[-1].id
        self._prepared_position = previous
        return _Batch(messages, len(notifications), notifications[-1].id, previous)

    async def _publish(self, messages: list[_Prepared]) -> None:
        futures = [
            await self.js.publish_async(m.subject, m.payload, headers=m.headers, stream=self.stream)
            for m in messages
        ]
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=self.publish_timeout)
        for ack in acks:
            if ack.stream != self.stream:
                raise RuntimeError(f"published to {ack.stream}, expected {self.stream}")


async def _wait_first(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in waiters:
        task.cancel()
    del pending


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
