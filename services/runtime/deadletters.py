"""The dead-letter stream of a consuming service: copies of the messages its consumers
terminated, each with why, where it came from and when; listed and replayed by an operator.

A dead letter is published before the consumer records the message's position as passed, so
a crash in between sends it again rather than loses it; ``Nats-Msg-Id`` (consumer, stream,
stream sequence) lets JetStream drop that second copy, and the listing shows one entry per
original message in any case.

Replaying one (after a fix: a corrected contract model, handler or referential) parses the
copy again with the consumer's current table and applies it, outside the chain (its position
was passed long ago), in one transaction with a tracking record of its own, named after the
original message (``deadletter:<durable>:<stream>:<stream sequence>``), so a message is
replayed at most once however many copies the dead-letter stream holds. It is applied to the
state as it is now: events that followed it have been applied already, so replay a candidate's
dead letters in their order, and mind that replaying, say, an award after its withdrawal
passed issues it again (``dead-letters show`` first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError, Tracking
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.subjects import deadletter_stream, deadletter_subject
from services.runtime import tracing
from services.runtime.messages import HandlerTable, Message, Rejected, Unit
from services.runtime.outbox import EXPECTED_STREAM, header_size
from services.runtime.store import ServiceApplication

log = logging.getLogger(__name__)

REASON_CODE = "Certibloc-Dead-Reason-Code"
REASON = "Certibloc-Dead-Reason"
CONSUMER = "Certibloc-Dead-Consumer"
STREAM = "Certibloc-Dead-Stream"
SEQUENCE = "Certibloc-Dead-Stream-Sequence"
SUBJECT = "Certibloc-Dead-Subject"
AT = "Certibloc-Dead-At"
TRUNCATED = "Certibloc-Dead-Truncated"  # original length, when the copy had to be cut
DEFAULT_MAX_PAYLOAD = 1024 * 1024


@dataclass(frozen=True)
class DeadLetter:
    """A message a consumer terminated, as it arrived, and why."""

    payload: bytes
    reason_code: str
    reason: str
    consumer: str
    stream: str
    stream_sequence: int
    subject: str
    traceparent: str | None = None
    at: str = ""

    def headers(self) -> dict[str, str]:
        headers = {
            "Nats-Msg-Id": f"{self.consumer}:{self.stream}:{self.stream_sequence}",
            REASON_CODE: self.reason_code,
            REASON: _header_text(self.reason),
            CONSUMER: self.consumer,
            STREAM: self.stream,
            SEQUENCE: str(self.stream_sequence),
            SUBJECT: _header_text(self.subject),
            AT: self.at or datetime.now(UTC).isoformat(),
        }
        if self.traceparent:
            headers[tracing.TRACEPARENT] = self.traceparent
        return headers


@dataclass(frozen=True)
class StoredDeadLetter:
    """A dead letter read back from the stream."""

    sequence: int
    headers: dict[str, str]
    payload: bytes

    @property
    def consumer(self) -> str:
        return self.headers.get(CONSUMER, "")

    def summary(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "at": self.headers.get(AT),
            "consumer": self.consumer,
            "stream": self.headers.get(STREAM),
            "stream_sequence": int(self.headers.get(SEQUENCE, "0") or 0),
            "subject": self.headers.get(SUBJECT),
            "reason_code": self.headers.get(REASON_CODE),
            "reason": self.headers.get(REASON),
            "truncated": TRUNCATED in self.headers,
            "bytes": len(self.payload),
        }


def _header_text(text: str) -> str:
    """Headers are one line of printable ASCII: anything else is escaped, and cut."""
    flat = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else " " for c in flat)[:500]


async def publish(
    js: JetStreamContext,
    service: str,
    letters: Sequence[DeadLetter],
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Copy ``letters`` to the service's dead-letter stream; returns once all are stored.

    The server counts headers against ``max_payload`` with the payload (and closes the
    connection of a client that sends more): a message that filled the limit does not fit
    beside our headers, so its copy is cut, and says so."""
    stream = deadletter_stream(service)
    for letter in letters:
        subject = deadletter_subject(service, letter.consumer)
        headers = {**letter.headers(), EXPECTED_STREAM: stream}
        payload = letter.payload
        if len(payload) + header_size(headers) > max_payload:
            headers[TRUNCATED] = str(len(payload))
            payload = payload[: max(max_payload - header_size(headers), 0)]
        await js.publish(subject, payload, headers=headers)
        log.error(
            "message dead-lettered",
            extra={
                "consumer": letter.consumer,
                "stream": letter.stream,
                "stream_sequence": letter.stream_sequence,
                "reason_code": letter.reason_code,
                "reason": letter.reason,
            },
        )


async def list_letters(js: JetStreamContext, service: str) -> list[StoredDeadLetter]:
    """Every dead letter on the service's stream, oldest first (one per original message)."""
    stream = deadletter_stream(service)
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    if not info.state.messages:
        return []
    seen: set[tuple[str, str]] = set()
    found: list[StoredDeadLetter] = []
    for sequence in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
        letter = await read(js, service, sequence)
        if letter is None:
            continue
        origin = (letter.consumer, f"{letter.headers.get(STREAM)}:{letter.headers.get(SEQUENCE)}")
        if origin in seen:
            continue
        seen.add(origin)
        found.append(letter)
    return found


async def read(js: JetStreamContext, service: str, sequence: int) -> StoredDeadLetter | None:
    try:
        raw = await js.get_msg(deadletter_stream(service), seq=sequence)
    except NotFoundError:
        return None
    headers = {str(k): str(v) for k, v in (raw.headers or {}).items()}
    return StoredDeadLetter(sequence, headers, raw.data or b"")


@dataclass(frozen=True)
class ReplayOutcome:
    applied: bool
    detail: str


def replay(
    app: ServiceApplication,
    table: HandlerTable,
    letter: StoredDeadLetter,
    before_commit: Callable[[Unit], None] | None = None,
) -> ReplayOutcome:
    """Apply a dead letter with today's code, once (see the module's docstring)."""
    if TRUNCATED in letter.headers:
        return ReplayOutcome(False, "the copy was cut to fit the bus: it cannot be replayed")
    message: Message = table.parse(letter.payload, letter.headers.get(SUBJECT))
    if message.dead is not None:
        return ReplayOutcome(False, f"still refused ({message.dead[0]}): {message.dead[1]}")
    if message.handler is None:
        return ReplayOutcome(False, "nothing to apply: this consumer does not handle its type")
    origin = f"{letter.headers.get(STREAM)}:{letter.headers.get(SEQUENCE)}"
    tracking = Tracking(f"deadletter:{letter.consumer}:{origin}", 1)
    if app.process_recorder.has_tracking_id(tracking.application_name, 1):
        return ReplayOutcome(False, "already replayed")
    unit: Unit = ProcessingEvent()
    assert message.event is not None
    try:
        with tracing.continued(message.event.traceparent, message.event.tracestate):
            message.apply(unit)
    except Rejected as refusal:
        return ReplayOutcome(False, f"still refused by its handler: {refusal}")
    if before_commit is not None:
        before_commit(unit)
    try:
        app.record(unit, tracking)
    except IntegrityError:
        return ReplayOutcome(False, "already replayed (or the store moved on meanwhile: retry)")
    return ReplayOutcome(True, f"applied {message.event.type} {message.event.id}")
