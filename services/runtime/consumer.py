"""JetStream consumer with an exactly-once effect.

A durable pull consumer fetches batches; the events a handler produces for a contiguous run of
messages are written in one transaction together with a tracking record of the upstream
position reached. So:

- a redelivered message (position already tracked) is acknowledged and not applied again;
- a message whose ``previous`` is not the tracked position arrived before one it depends on
  (e.g. after a crash left earlier messages unacknowledged): it is nak'ed and comes back later,
  so nothing is ever skipped;
- two replicas racing on the same position: one transaction wins, the other gets an
  ``IntegrityError``, re-reads the position and acknowledges what was already done.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError, Tracking
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from contracts.envelope import CloudEvent
from services.runtime import tracing
from services.runtime.metrics import Metrics
from services.runtime.nats import ensure_consumer
from services.runtime.store import ServiceApplication

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, ProcessingEvent[UUID]], None]
BeforeCommit = Callable[[ProcessingEvent[UUID]], None]
Trace = tuple[str | None, str | None]  # (traceparent, tracestate) from the NATS headers


@dataclass
class _Verdicts:
    ack: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # failed: come back after retry_delay
    early: list[int] = field(default_factory=list)  # before their predecessor: back at once
    applied: int = 0


class EventConsumer:
    def __init__(
        self,
        app: ServiceApplication,
        handler: Handler,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        upstream: str,
        batch_size: int = 500,
        fetch_timeout: float = 0.5,
        retry_delay: float = 0.5,
        before_commit: BeforeCommit | None = None,
        ack_wait: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.handler = handler
        self.before_commit = before_commit
        # Messages held by a consumer that died come back after ack_wait, and the ones after
        # them wait for them (positions must be contiguous): short, since a batch takes well
        # under a second; a redelivery of a message still being applied is harmless.
        self.ack_wait = ack_wait
        self.early_delay = 0.03
        self.js = js
        self.stream = stream
        self.durable = durable
        self.upstream = upstream
        self.batch_size = batch_size
        self.fetch_timeout = fetch_timeout
        self.retry_delay = retry_delay
        self.applied_total = 0
        self.instruments = metrics.consumer(durable, stream) if metrics is not None else None
        self._position: int | None = None
        self._sub: Any = None

    async def start(self) -> None:
        await ensure_consumer(
            self.js,
            self.stream,
            self.durable,
            ack_wait=self.ack_wait,
            max_ack_pending=self.batch_size * 4,
        )
        self._sub = await self.js.pull_subscribe_bind(self.durable, self.stream)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set. The next batch is fetched while the current one is
        being applied, so NATS round trips overlap with the work."""
        if self._sub is None:
            await self.start()
        prefetch: asyncio.Task[list[Any]] | None = None
        while not stop.is_set():
            try:
                fetching, prefetch = prefetch, None  # a failed fetch must not be awaited again
                msgs = await (fetching or self._fetch())
                prefetch = asyncio.create_task(self._fetch())
                await self._process(msgs)
            except Exception:
                log.exception("consumer batch failed; it will be redelivered")
                self._position = None
                await asyncio.sleep(self.retry_delay)
        if prefetch is not None:
            prefetch.cancel()
            await asyncio.gather(prefetch, return_exceptions=True)

    async def consume_once(self) -> int:
        """Fetch one batch and apply it; return how many messages were newly applied."""
        return await self._process(await self._fetch())

    async def _fetch(self) -> list[Any]:
        try:
            msgs: list[Any] = await self._sub.fetch(self.batch_size, timeout=self.fetch_timeout)
        except (NatsTimeoutError, TimeoutError):
            return []
        if msgs and self.instruments is not None:
            # The lag is what the last message says is still undelivered: no extra round trip.
            self.instruments.lag.set(msgs[-1].metadata.num_pending)
            again = sum(1 for m in msgs if _delivery_count(m) > 1)
            if again:
                self.instruments.redelivered.inc(again)
        return msgs

    async def _process(self, msgs: list[Any]) -> int:
        if not msgs:
            return 0
        verdicts = await asyncio.to_thread(
            self._parse_and_apply, [m.data for m in msgs], [_trace_of(m) for m in msgs]
        )
        for i in verdicts.ack:
            await msgs[i].ack()
        for i in verdicts.retry:
            await msgs[i].nak(delay=self.retry_delay)
        for i in verdicts.early:
            # Another replica (or a redelivery) holds the missing event: hand these back soon
            # (not at once: with small batches they would come straight back, ahead of the
            # event they wait for) and step aside briefly so that whoever holds it goes on.
            await msgs[i].nak(delay=self.early_delay)
        if verdicts.early and not verdicts.applied:
            await asyncio.sleep(self.early_delay / 2)
        self.applied_total += verdicts.applied
        if self.instruments is not None and verdicts.applied:
            self.instruments.applied.inc(verdicts.applied)
        return verdicts.applied

    async def position(self) -> int:
        if self._position is None:
            self._position = await asyncio.to_thread(self._stored_position)
        return self._position

    # --- internals (run in a worker thread: eventsourcing is synchronous) ----------------

    def _parse_and_apply(self, payloads: list[bytes], traces: list[Trace]) -> _Verdicts:
        return self._apply([CloudEvent.model_validate_json(p) for p in payloads], traces)

    def _stored_position(self) -> int:
        return self.app.process_recorder.max_tracking_id(self.upstream) or 0

    def _apply(self, events: list[CloudEvent], traces: list[Trace] | None = None) -> _Verdicts:
        if self._position is None:
            self._position = self._stored_position()
        order = sorted(range(len(events)), key=lambda i: events[i].position)
        first_new = next((events[i] for i in order if events[i].position > self._position), None)
        if first_new is not None and first_new.previous != self._position:
            # Another replica may have moved on: look again before calling it a gap.
            self._position = self._stored_position()
        verdicts = _Verdicts()
        unit: ProcessingEvent[UUID] = ProcessingEvent()
        reached = self._position
        pending: list[int] = []
        for k, i in enumerate(order):
            event = events[i]
            if event.position <= reached:
                verdicts.ack.append(i)  # already applied: a redelivery
            elif event.previous != reached:
                verdicts.early.append(i)  # an earlier event is still on its way
            else:
                try:
                    self._handle(event, traces[i] if traces else None, unit)
                except Exception:
                    verdicts.retry.extend(order[k:])
                    # The failed call may have collected part of its effect: start over with
                    # only the events that succeeded.
                    unit = ProcessingEvent()
                    for j in pending:
                        self._handle(events[j], traces[j] if traces else None, unit)
                    break
                pending.append(i)
                reached = event.position
        if pending:
            if self.before_commit is not None:
                self.before_commit(unit)
            try:
                self.app.record(unit, Tracking(self.upstream, reached))
            except IntegrityError:
                # Someone recorded this position first (a replica, or our own earlier try).
                self._position = None
                return _Verdicts(ack=[], retry=list(range(len(events))))
            self._position = reached
            verdicts.ack.extend(pending)
            verdicts.applied = len(pending)
        return verdicts

    def _handle(self, event: CloudEvent, trace: Trace | None, unit: ProcessingEvent[UUID]) -> None:
        """Apply one event in a child span of the trace it carries (NATS headers, else the
        envelope; a new trace if neither): the events it produces are stamped with that span."""
        traceparent, tracestate = (
            trace if trace and trace[0] else (event.traceparent, event.tracestate)
        )
        n_events, n_aggregates = len(unit.events), len(unit.aggregates)
        with tracing.continued(traceparent, tracestate) as ctx:
            try:
                self.handler(event, unit)
            except Exception:
                log.exception("handler failed", extra={"event_id": event.id, "type": event.type})
                raise
            _stamp_new(unit, n_events, n_aggregates, ctx)


def _stamp_new(
    unit: ProcessingEvent[UUID], n_events: int, n_aggregates: int, ctx: tracing.TraceContext
) -> None:
    """Stamp what one handler call added to the unit: events appended to it, and the pending
    events of aggregates it staged for the first time (dicts keep insertion order)."""
    if len(unit.events) > n_events:
        tracing.stamp_all(unit.events[n_events:], ctx)
    added = len(unit.aggregates) - n_aggregates
    if added > 0:
        for aggregate in itertools.islice(reversed(unit.aggregates.values()), added):
            tracing.stamp_all(getattr(aggregate, "pending_events", ()), ctx)


def _trace_of(msg: Any) -> Trace:
    headers = msg.headers
    if not headers:
        return None, None
    return headers.get(tracing.TRACEPARENT), headers.get(tracing.TRACESTATE)


def _delivery_count(msg: Any) -> int:
    """How many times JetStream delivered ``msg``, read from its reply subject without parsing
    all its metadata: ``$JS.ACK.<stream>.<consumer>.<delivered>...`` (9 tokens) or, with a
    domain and account hash, ``$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>...``."""
    tokens = (msg.reply or "").split(".")
    try:
        if len(tokens) == 9:
            return int(tokens[4])
        if len(tokens) >= 11:
            return int(tokens[6])
    except ValueError:
        pass
    return 1
