"""Outbox relay: publishes a service's own notification log to its JetStream stream.

Events leave a service only this way (no dual writes). Each stored notification is translated
into zero or more contract events; each is published with ``Nats-Msg-Id`` =
``<source>:<notification id>:<index>`` so a relay that restarts and republishes is deduplicated
by JetStream, and carries ``position``/``previous`` so consumers can detect gaps.

Each event goes to its partition (``contracts.subjects.partition_of`` its key), and its
``previous`` is the position of the last event published *in that partition*: every partition
is a chain of its own, which a consumer applies independently of the others.

The relay's position (the position of the last event it got acknowledged) is stored as a
tracking record in the service's own database, after the stream acknowledged the batch, with
the last position of each partition it published to (one record each, in one transaction).

The trace context a stored event was stamped with (``services.runtime.tracing``) goes out as
the CloudEvent's ``traceparent``/``tracestate`` and as the same NATS headers.

A relay never stalls in silence: when a message cannot be published for a reason retrying
will not fix (larger than the server accepts, refused by the stream), or when the same
position keeps failing for ``stuck_after`` seconds, the relay reports itself *stuck* at that
position — an error log line naming it, the ``certibloc_relay_stuck`` and
``certibloc_relay_stuck_position`` gauges, and a red ``/readyz`` — and keeps retrying, so it
resumes by itself once the cause is fixed. Other streams and services are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import orjson
from eventsourcing.persistence import IntegrityError, Tracking
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from contracts.envelope import message_position, notification_of
from contracts.subjects import lane, partition_in, partition_of
from services.runtime import tracing
from services.runtime.metrics import Metrics
from services.runtime.outbox import Outgoing, Prepared, Translator, encode
from services.runtime.store import ServiceApplication

__all__ = ["OutboxRelay", "Outgoing", "Translator"]

log = logging.getLogger(__name__)
STUCK_LOG_EVERY = 60.0  # while stuck, the error line is repeated this often (seconds)
CATCH_UP_SCAN = 1000  # messages looked at, from the stream's end, for our last one


@dataclass(frozen=True)
class _Batch:
    messages: list[Prepared]
    scanned: int
    last_notification_id: int
    last_position: int
    chains: tuple[int, ...] = ()  # each partition's last position after this batch


class RelayFailure(Exception):
    """The relay cannot get past ``position``: why, and whether retrying can help."""

    def __init__(self, position: int, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.position = position
        self.permanent = permanent


class PublishFailed(RelayFailure):
    """A message of a batch was not acknowledged: which one, and why."""

    def __init__(self, message: Prepared, error: BaseException) -> None:
        super().__init__(
            message.position,
            f"{message.msg_id}: {type(error).__name__}: {error}",
            permanent=_permanent(error),
        )
        self.msg_id = message.msg_id
        self.error = error


class Untranslatable(RelayFailure):
    """A stored event the translation fails on: a bug, which retrying will not fix."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(
            position, f"translation failed: {type(error).__name__}: {error}", permanent=True
        )


def _permanent(error: BaseException) -> bool:
    """Errors a retry cannot fix: the message itself is refused."""
    if isinstance(error, MaxPayloadError):
        return True
    # JetStream answers 400 when the stream refuses the message (e.g. above its max_msg_size);
    # 503 and timeouts are an unavailable server or leader election: those pass.
    return isinstance(error, APIError) and error.code == 400


@dataclass(frozen=True)
class Stuck:
    """Where a relay cannot get past, since when, and why."""

    position: int
    reason: str
    since: float  # time.monotonic()
    permanent: bool


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
        stuck_after: float = 30.0,
        partitions: int = 1,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.partitions = partitions
        self._chains = [0] * partitions  # each partition's last position prepared
        self._stored_chains = [0] * partitions  # ... and stored
        self.translate = translate
        self.js = js
        self.source = source
        self.stream = stream
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.publish_timeout = publish_timeout
        self.stuck_after = stuck_after
        self.stuck: Stuck | None = None
        self._failing: Stuck | None = None  # the first failure at the current position
        self._stuck_logged = 0.0
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
            except Exception as error:
                self._failed(error)
                if inflight is not None:
                    inflight.cancel()
                    inflight = None
                self._position = None
                await _wait_or_stop(stop, backoff)
                backoff = min(backoff * 2, 30.0 if self.stuck else 5.0)
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

    def problem(self) -> str | None:
        """Why this relay is not ready (in French, for ``/readyz``), or None."""
        stuck = self.stuck
        if stuck is None:
            return None
        return (
            f"le relais du flux {self.stream} est bloqué à la position {stuck.position} "
            f"depuis {time.monotonic() - stuck.since:.0f} s : {stuck.reason}"
        )

    # --- health --------------------------------------------------------------------------

    def _failed(self, error: Exception) -> None:
        """Note a failed attempt; report the relay stuck when retrying will not help."""
        now = time.monotonic()
        if isinstance(error, RelayFailure):
            position, reason, permanent = error.position, str(error), error.permanent
        else:
            position = self._position or 0  # it cannot get past what it stored
            reason, permanent = f"{type(error).__name__}: {error}", False
        if self._failing is None or self._failing.position != position:
            self._failing = Stuck(position, reason, now, permanent)
        since = self._failing.since
        if permanent or now - since >= self.stuck_after:
            if self.stuck is None or self.stuck.position != position:
                self.stuck = Stuck(position, reason, since, permanent)
                self._stuck_logged = 0.0
                if self.instruments is not None:
                    self.instruments.stuck(position)
            if now - self._stuck_logged >= STUCK_LOG_EVERY:
                self._stuck_logged = now
                log.error(
                    "relay stuck: cannot publish past this position",
                    extra={
                        "stream": self.stream,
                        "position": position,
                        "reason": reason,
                        "permanent": permanent,
                        "stuck_seconds": round(now - since),
                    },
                )
        else:
            log.warning(
                "relay failed; resuming from the stored position",
                extra={"stream": self.stream, "position": position, "reason": reason},
            )

    def _progressed(self) -> None:
        self._failing = None
        if self.stuck is not None:
            log.warning(
                "relay resumed",
                extra={"stream": self.stream, "position": self.stuck.position},
            )
            self.stuck = None
            if self.instruments is not None:
                self.instruments.unstuck()

    # --- internals -----------------------------------------------------------------------

    async def _deliver(self, batch: _Batch) -> None:
        await self._publish(batch.messages)
        trackings = []
        if batch.last_position > self._recorded_through:  # else catching up: recorded long ago
            trackings.append(Tracking(self.tracking_name, batch.last_position))
        if self.partitions > 1:
            trackings += [
                Tracking(lane(self.tracking_name, p, self.partitions), last)
                for p, (last, stored) in enumerate(
                    zip(batch.chains, self._stored_chains, strict=True)
                )
                if last > stored
            ]
        if trackings:
            try:
                await asyncio.to_thread(self.app.record_positions, trackings)
            except IntegrityError:
                # Another relay of the same service (a second worker or replica) stored this
                # position or a later one: its publications were deduplicated, ours too.
                self._position = None
                return
        self._stored_chains = [
            max(a, b) for a, b in zip(batch.chains, self._stored_chains, strict=True)
        ]
        self._position = batch.last_position
        self._count(batch)

    def _count(self, batch: _Batch) -> None:
        self._progressed()
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
        try:
            last = await self._stream_last_position()
        except NotFoundError:
            raise RelayFailure(
                self._position,
                f"stream {self.stream} not found: has the bus been provisioned "
                "(python -m services.runtime.provision)?",
                permanent=False,
            ) from None
        if last is None:
            return  # nothing of ours at the end of the stream: trust our own position
        if last < self._position:
            self._recorded_through = max(self._recorded_through, self._position)
            log.warning(
                "stream behind the relay's stored position: publishing again from the stream's",
                extra={"stream": self.stream, "stored": self._position, "stream_last": last},
            )
            self._position = self._prepared_position = self._skip_through = last
            # Each partition's chain as the stream holds it: republished events must be the
            # same, ``previous`` included, as those it lost.
            self._chains = [
                stored if stored <= last else await self._stream_last_in(p, last)
                for p, stored in enumerate(self._stored_chains)
            ]
            # The stream may end inside a notification's events: scan that one again.
            self._cursor = max(notification_of(last) - 1, 0)

    async def _stream_last_position(self) -> int | None:
        """The position of the last message on the stream that is one of ours: a message
        published there by anyone else (which only our credentials could, by mistake) is
        passed over, never trusted. None when the last CATCH_UP_SCAN messages hold none."""
        info = await self.js.stream_info(self.stream)
        if not info.state.messages:
            return 0
        floor = max(info.state.first_seq, info.state.last_seq - CATCH_UP_SCAN + 1)
        for sequence in range(info.state.last_seq, floor - 1, -1):
            try:
                message = await self.js.get_msg(self.stream, seq=sequence)
            except NotFoundError:
                continue  # removed meanwhile
            position = _own_position(message.data, self.source)
            if position is not None:
                return position
        log.error(
            "no message of ours at the end of the stream: not catching up",
            extra={"stream": self.stream, "scanned": info.state.last_seq - floor + 1},
        )
        return None

    async def _stream_last_in(self, partition: int, last: int) -> int:
        """The position of our last message in ``partition`` the stream holds (0 if none)."""
        if self.partitions == 1:
            return last
        info = await self.js.stream_info(self.stream)
        for sequence in range(info.state.last_seq, info.state.first_seq - 1, -1):
            try:
                message = await self.js.get_msg(self.stream, seq=sequence)
            except NotFoundError:
                continue
            if partition_in(message.subject or "") != partition:
                continue
            position = _own_position(message.data, self.source)
            if position is not None and position <= last:
                return position
        return 0

    def _signal(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def _load_position(self) -> None:
        recorder = self.app.process_recorder
        stored = recorder.max_tracking_id(self.tracking_name) or 0
        self._position = self._prepared_position = stored
        if self.partitions == 1:
            chains = [stored]  # one partition: its chain is the whole log's, as before
        else:
            chains = [
                recorder.max_tracking_id(lane(self.tracking_name, p, self.partitions)) or 0
                for p in range(self.partitions)
            ]
        self._chains, self._stored_chains = list(chains), list(chains)
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
        last = self._prepared_position
        messages: list[Prepared] = []
        for notification in notifications:
            try:
                domain_event = self.app.mapper.to_domain_event(notification)
                outgoing = self.translate(domain_event)
            except Exception as error:
                raise Untranslatable(message_position(notification.id, 0), error) from error
            timestamp = getattr(domain_event, "timestamp", None)
            traceparent, tracestate = tracing.stamped(domain_event)
            for index, out in enumerate(outgoing):
                position = message_position(notification.id, index)
                if position <= self._skip_through:
                    continue  # on the stream already (catching up)
                partition = partition_of(out.key, self.partitions) if self.partitions > 1 else 0
                messages.append(
                    encode(
                        out,
                        stream=self.stream,
                        source=self.source,
                        notification_id=notification.id,
                        index=index,
                        previous=self._chains[partition],
                        timestamp=timestamp,
                        traceparent=traceparent,
                        tracestate=tracestate,
                        partition=partition,
                    )
                )
                self._chains[partition] = last = position
        self._cursor = notifications[-1].id
        self._prepared_position = last
        return _Batch(messages, len(notifications), notifications[-1].id, last, tuple(self._chains))

    async def _publish(self, messages: list[Prepared]) -> None:
        futures = []
        for m in messages:
            try:
                # The expected-stream header is the message's own (counted in its size).
                futures.append(await self.js.publish_async(m.subject, m.payload, headers=m.headers))
            except Exception as error:
                for future in futures:
                    future.cancel()
                raise PublishFailed(m, error) from error
        _, pending = await asyncio.wait(futures, timeout=self.publish_timeout)
        for future in pending:
            future.cancel()
        for m, future in zip(messages, futures, strict=True):
            if future in pending:
                raise PublishFailed(
                    m, TimeoutError(f"no acknowledgement in {self.publish_timeout} s")
                )
            refused = future.exception()
            if refused is not None:
                raise PublishFailed(m, refused) from refused
            ack = future.result()
            if ack.stream != self.stream:
                raise PublishFailed(m, RuntimeError(f"published to {ack.stream}"))


def _own_position(data: bytes | None, source: str) -> int | None:
    try:
        envelope = orjson.loads(data or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(envelope, dict) or envelope.get("source") != source:
        return None
    position = envelope.get("position")
    return position if isinstance(position, int) and position >= 0 else None


async def _wait_first(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in waiters:
        task.cancel()
    del pending


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
