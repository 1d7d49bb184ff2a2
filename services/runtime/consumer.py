"""JetStream consumer with an exactly-once effect, on typed messages.

A durable pull consumer fetches batches. Each message is parsed on its own
(``services.runtime.messages``): into the contract model of its type, handed to the handler
the consumer's table names; or passed over; or dead-lettered. What the handlers produce for a
contiguous run of messages is written in one transaction together with a tracking record of
the upstream position reached. So:

- a redelivered message (position already tracked) is acknowledged and not applied again;
- a message whose ``previous`` is not the tracked position arrived before one it depends on
  (e.g. after a crash left earlier messages unacknowledged): it is nak'ed and comes back later,
  so nothing is ever skipped;
- two replicas racing on the same position: one transaction wins, the other gets an
  ``IntegrityError``, re-reads the position and acknowledges what was already done;
- a message that cannot be applied (not a CloudEvent, another source, data that does not fit
  its contract, refused by its handler) is copied to the dead-letter stream *before* its
  position is recorded as passed, then terminated (AckTerm): it never blocks the lane, and a
  crash in between copies it again rather than loses it. One without a position of the chain
  (malformed, foreign, or overlapping the chain already applied) never moves the chain.

The chain trusts the positions its producer declares: the bus's authorization is what keeps
anyone else from publishing on a producer's subjects. A consumer never stalls in silence
either: waiting for the same position longer than ``stuck_after`` (an event whose predecessor
does not come, a handler that keeps failing) reports it stuck (log, metric, red /readyz), and a
first delivery of a position already passed (a copy published again, or a producer declaring
positions it should not) is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError, Tracking
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from contracts.subjects import STREAMS, durable_for, lane
from services.runtime import deadletters, tracing
from services.runtime.messages import (
    INVALID,
    REJECTED,
    HandlerTable,
    Message,
    Rejected,
    Unit,
)
from services.runtime.metrics import Metrics
from services.runtime.store import ServiceApplication

log = logging.getLogger(__name__)

BeforeCommit = Callable[[Unit], None]
Trace = tuple[str | None, str | None]  # (traceparent, tracestate) from the NATS headers


@dataclass(frozen=True)
class ConsumerSpec:
    """One durable consumer of a service, as data: the composition root declares them, the
    runtime runs them, the operator's dead-letter commands replay through them."""

    durable: str
    handlers: HandlerTable
    before_commit: BeforeCommit | None = None

    @property
    def producer(self) -> str:
        return self.handlers.producer


class Raw(NamedTuple):
    """What the worker thread needs of a NATS message."""

    data: bytes
    subject: str
    reply: str
    trace: Trace


@dataclass
class _Verdicts:
    ack: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # failed: come back after retry_delay
    early: list[int] = field(default_factory=list)  # before their predecessor: back at once
    dead: list[int] = field(default_factory=list)  # dead-lettered: terminate
    applied: int = 0


class EventConsumer:
    def __init__(
        self,
        app: ServiceApplication,
        spec: ConsumerSpec,
        js: JetStreamContext,
        *,
        service: str,
        stream: str | None = None,
        upstream: str | None = None,
        partition: int = 0,
        partitions: int = 1,
        batch_size: int = 500,
        fetch_timeout: float = 0.5,
        retry_delay: float = 0.5,
        max_payload: int = deadletters.DEFAULT_MAX_PAYLOAD,
        stuck_after: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.spec = spec
        self.table = spec.handlers
        self.before_commit = spec.before_commit
        self.service = service  # the consuming service: owner of the dead-letter stream
        self.early_delay = 0.03
        self.js = js
        self.stream = stream or STREAMS[spec.producer]
        # One partition of the stream: its own durable consumer and its own chain.
        self.partition = partition
        self.durable = durable_for(spec.durable, partition, partitions)
        self.upstream = lane(upstream or spec.producer, partition, partitions)
        self.batch_size = batch_size
        self.fetch_timeout = fetch_timeout
        self.retry_delay = retry_delay
        self.max_payload = max_payload  # the server's: a dead letter's copy must fit in it
        self.stuck_after = stuck_after
        self.stuck: tuple[int, str, float] | None = None  # (position, why, since when)
        self._waiting: tuple[int, str] | None = None  # what the last batch could not get past
        self._progress_at = time.monotonic()
        self._stuck_logged = 0.0
        self.applied_total = 0
        self.dead_total = 0
        self.instruments = metrics.consumer(self.durable, self.stream) if metrics else None
        self._position: int | None = None
        self._sub: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind to the durable consumer provisioned for us (``services.runtime.provision``);
        raises NotFoundError until it exists."""
        await self.js.consumer_info(self.stream, self.durable)
        self._sub = await self.js.pull_subscribe_bind(self.durable, self.stream)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set. The next batch is fetched while the current one is
        being applied, so NATS round trips overlap with the work."""
        while self._sub is None and not stop.is_set():
            try:
                await self.start()
            except Exception as error:
                # Typically the stream and its consumers are not provisioned yet.
                log.warning(
                    "consumer not provisioned yet; retrying",
                    extra={"durable": self.durable, "stream": self.stream, "error": str(error)},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
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
            again = sum(1 for m in msgs if _ack_token(m, 4) > 1)
            if again:
                self.instruments.redelivered.inc(again)
        return msgs

    async def _process(self, msgs: list[Any]) -> int:
        if not msgs:
            return 0
        self._loop = asyncio.get_running_loop()
        raws = [Raw(m.data, m.subject, m.reply or "", _trace_of(m)) for m in msgs]
        verdicts = await asyncio.to_thread(self._parse_and_apply, raws)
        for i in verdicts.ack:
            await msgs[i].ack()
        for i in verdicts.dead:
            await msgs[i].term()
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
        self._check_stuck()
        return verdicts.applied

    def problem(self) -> str | None:
        """Why this consumer is not ready (in French, for ``/readyz``), or None."""
        if self.stuck is None:
            return None
        position, why, since = self.stuck
        return (
            f"le consommateur {self.durable} du flux {self.stream} n'avance plus depuis "
            f"{time.monotonic() - since:.0f} s après la position {position} : {why}"
        )

    def _check_stuck(self) -> None:
        now = time.monotonic()
        waiting = self._waiting
        if waiting is None or now - self._progress_at < self.stuck_after:
            if self.stuck is not None and waiting is None:
                log.warning("consumer resumed", extra={"durable": self.durable})
                self.stuck = None
                if self.instruments is not None:
                    self.instruments.stuck.set(0)
            return
        if self.stuck is None:
            self.stuck = (waiting[0], waiting[1], self._progress_at)
            self._stuck_logged = 0.0
            if self.instruments is not None:
                self.instruments.stuck.set(1)
        if now - self._stuck_logged >= 60.0:
            self._stuck_logged = now
            log.error(
                "consumer stuck: no progress past this position",
                extra={
                    "durable": self.durable,
                    "stream": self.stream,
                    "position": waiting[0],
                    "reason": waiting[1],
                    "stuck_seconds": round(now - self._progress_at),
                },
            )

    async def position(self) -> int:
        if self._position is None:
            self._position = await asyncio.to_thread(self._stored_position)
        return self._position

    # --- internals (run in a worker thread: eventsourcing is synchronous) ----------------

    def _parse_and_apply(self, raws: Sequence[Raw]) -> _Verdicts:
        return self._apply([self.table.parse(r.data, r.subject) for r in raws], raws)

    def _stored_position(self) -> int:
        return self.app.process_recorder.max_tracking_id(self.upstream) or 0

    def _apply(self, messages: Sequence[Message], raws: Sequence[Raw]) -> _Verdicts:
        if self._position is None:
            self._position = self._stored_position()
        verdicts = _Verdicts()
        outside: list[deadletters.DeadLetter] = []  # malformed or foreign: dead at once
        letters: list[deadletters.DeadLetter] = []  # dead in the chain: once it is recorded
        chain: list[int] = []
        for i, message in enumerate(messages):
            if message.in_chain:
                chain.append(i)
            else:
                assert message.dead is not None
                outside.append(self._letter(raws[i], *message.dead))
                verdicts.dead.append(i)
        chain.sort(key=lambda i: _event(messages[i]).position)
        first_new = next((i for i in chain if _event(messages[i]).position > self._position), None)
        if first_new is not None and _event(messages[first_new]).previous != self._position:
            # Another replica may have moved on: look again before calling it a gap.
            self._position = self._stored_position()
        unit: Unit = ProcessingEvent()
        start = reached = self._position
        applied: list[int] = []  # handled, their effects in ``unit``
        passed: list[int] = []  # no effect here, position passed
        dead: list[int] = []  # dead-lettered, position passed
        waiting: tuple[int, str] | None = None
        for k, i in enumerate(chain):
            message, event = messages[i], _event(messages[i])
            if event.position <= reached:
                verdicts.ack.append(i)  # already applied: a redelivery
                if _ack_token(raws[i], 4) == 1:
                    self._duplicate(event.position, reached, raws[i])
                continue
            if event.previous < reached:
                # Its predecessor is behind what was applied, itself ahead of it: no correct
                # relay publishes that. Out of the chain: it must not move it.
                letters.append(
                    self._letter(raws[i], INVALID, f"previous {event.previous} overlaps the chain")
                )
                verdicts.dead.append(i)
                continue
            if event.previous != reached:
                verdicts.early.append(i)  # an earlier event is still on its way
                waiting = waiting or (
                    reached,
                    f"la position {event.position} attend {event.previous}",
                )
                continue
            if message.dead is not None:
                letters.append(self._letter(raws[i], *message.dead))
                dead.append(i)
            elif message.handler is None:
                passed.append(i)
                if message.skip and self.instruments is not None:
                    self.instruments.skip(message.skip)
            else:
                try:
                    self._handle(message, raws[i].trace, unit)
                except Rejected as refusal:
                    log.warning("handler rejected a message", extra={"event_id": event.id})
                    letters.append(self._letter(raws[i], REJECTED, str(refusal)))
                    dead.append(i)
                    # Its call may have left part of an effect in the unit: redo the others
                    # (once) and stop the batch here; what follows comes back at once.
                    unit = self._redo(messages, raws, applied)
                    reached = event.position
                    verdicts.early.extend(chain[k + 1 :])
                    break
                except Exception as error:
                    verdicts.retry.extend(chain[k:])
                    unit = self._redo(messages, raws, applied)
                    waiting = (reached, f"{type(error).__name__}: {error}"[:300])
                    break
                else:
                    applied.append(i)
            reached = event.position
        if outside or letters:
            self._publish_dead(outside + letters)  # before the position passes: never lost
        self._count_dead(outside)
        if reached > self._position:
            if applied and self.before_commit is not None:
                self.before_commit(unit)
            try:
                self.app.record(unit, Tracking(self.upstream, reached))
            except IntegrityError:
                # Someone recorded this position first (a replica, or our own earlier try).
                self._position = None
                return _Verdicts(
                    retry=[i for i in chain if i not in verdicts.dead], dead=verdicts.dead
                )
            self._position = reached
        if reached > start:
            self._progress_at = time.monotonic()
        self._waiting = waiting if reached == start else None
        self._count_dead(letters)
        verdicts.ack.extend(applied + passed)
        verdicts.dead.extend(dead)
        verdicts.applied = len(applied) + len(passed)  # positions taken, dead letters aside
        return verdicts

    def _redo(
        self, messages: Sequence[Message], raws: Sequence[Raw], applied: Sequence[int]
    ) -> Unit:
        """A fresh unit with only the effects of ``applied``: a failed call may have collected
        part of its effect in the old one."""
        unit: Unit = ProcessingEvent()
        for j in applied:
            self._handle(messages[j], raws[j].trace, unit)
        return unit

    def _handle(self, message: Message, trace: Trace, unit: Unit) -> None:
        """Apply one message in a child span of the trace it carries (NATS headers, else the
        envelope; a new trace if neither): the events it produces are stamped with that span."""
        event = _event(message)
        traceparent, tracestate = trace if trace[0] else (event.traceparent, event.tracestate)
        n_events, n_aggregates = len(unit.events), len(unit.aggregates)
        with tracing.continued(traceparent, tracestate) as ctx:
            try:
                message.apply(unit)
            except Rejected:
                raise
            except Exception:
                log.exception("handler failed", extra={"event_id": event.id, "type": event.type})
                raise
            _stamp_new(unit, n_events, n_aggregates, ctx)

    def _duplicate(self, position: int, reached: int, raw: Raw) -> None:
        """A position already passed, delivered for the first time: a copy published again
        (a relay reset), or a producer declaring positions it should not. Never silent."""
        log.warning(
            "a first delivery of a position already passed: acknowledged without effect",
            extra={
                "durable": self.durable,
                "position": position,
                "reached": reached,
                "stream_sequence": _ack_token(raw, 5),
            },
        )
        if self.instruments is not None:
            self.instruments.duplicates.inc()

    def _letter(self, raw: Raw, code: str, reason: str) -> deadletters.DeadLetter:
        return deadletters.DeadLetter(
            payload=raw.data,
            reason_code=code,
            reason=reason,
            consumer=self.durable,
            stream=self.stream,
            stream_sequence=_ack_token(raw, 5),
            subject=raw.subject,
            traceparent=raw.trace[0],
        )

    def _publish_dead(self, letters: list[deadletters.DeadLetter]) -> None:
        """From the worker thread: publish on the event loop and wait for the stream's acks."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(
            deadletters.publish(self.js, self.service, letters, self.max_payload), self._loop
        )
        future.result(timeout=30)

    def _count_dead(self, letters: list[deadletters.DeadLetter]) -> None:
        self.dead_total += len(letters)
        if self.instruments is not None:
            for letter in letters:
                self.instruments.dead(letter.reason_code)


def _event(message: Message) -> Any:
    assert message.event is not None
    return message.event


def _stamp_new(unit: Unit, n_events: int, n_aggregates: int, ctx: tracing.TraceContext) -> None:
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


def _ack_token(msg: Any, index: int) -> int:
    """A number from a JetStream message's reply subject, without parsing all its metadata:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``
    (9 tokens; with a domain and account hash, 2 more after ``ACK``). ``index`` 4 is the
    delivery count, 5 the stream sequence."""
    tokens = (msg.reply or "").split(".")
    try:
        if len(tokens) == 9:
            return int(tokens[index])
        if len(tokens) >= 11:
            return int(tokens[index + 2])
    except ValueError:
        pass
    return 1 if index == 4 else 0


__all__ = ["INVALID", "ConsumerSpec", "EventConsumer", "HandlerTable", "Rejected"]
