"""What the outbox relay publishes, built in one place: the CloudEvent and its NATS headers.

The relay encodes every message with ``encode``; the ``OutboxGuard`` encodes what a unit of
work *would* publish before it is stored and refuses it when one message would exceed what
the bus accepts. A stored event the bus refuses would stop the relay, and with it every
later event of every exam center: it must never be recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from contracts.envelope import EVENTS_PER_NOTIFICATION, message_position
from contracts.subjects import MAX_PARTITIONS, subject_for
from services.runtime import tracing
from services.runtime.problems import PayloadTooLarge, Unprocessable

log = logging.getLogger(__name__)

NATS_HEADER_LINE = len(b"NATS/1.0\r\n") + len(b"\r\n")  # status line and closing blank line
# Position and previous of a message yet to be stored: as wide as any the log will reach.
_WIDEST_NOTIFICATION_ID = 10**15 - 1


def header_size(headers: dict[str, str]) -> int:
    """Bytes NATS headers take on the wire (``NATS/1.0``, ``Name: value`` lines, blank line),
    which the server counts against ``max_payload`` with the payload."""
    if not headers:
        return 0
    return NATS_HEADER_LINE + sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())


M = TypeVar("M", bound=BaseModel)


def contract(model: type[M], **fields: Any) -> M:
    """The contract event ``fields`` make, validated. A stored event that today's contract
    refuses (written before a bound existed, or by a bug) is published anyway, unvalidated:
    its consumers dead-letter it, visibly, rather than the relay stopping at it or dropping
    it silently."""
    try:
        return model(**fields)
    except ValidationError as error:
        log.error(
            "a stored event does not fit its contract: published as it is, for its consumers "
            "to dead-letter",
            extra={
                "model": model.__name__,
                "errors": [
                    ".".join(map(str, e["loc"])) + ": " + e["msg"]
                    for e in error.errors(include_input=False)[:5]
                ],
            },
        )
        return model.model_construct(**fields)


@dataclass(frozen=True)
class Outgoing:
    """One contract event to publish: its model, the CloudEvents ``subject``, and the key its
    partition is derived from (``contracts.subjects.candidate_key``, or a center's UAI)."""

    event: BaseModel
    event_type: str
    subject: str | None = None
    key: str = ""


Translator = Callable[[Any], Sequence[Outgoing]]


@dataclass(frozen=True)
class Prepared:
    """A message as it goes on the wire."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    position: int
    partition: int = 0

    @property
    def size(self) -> int:
        """Bytes the server counts against ``max_payload``: the payload and the headers."""
        return len(self.payload) + header_size(self.headers)

    @property
    def msg_id(self) -> str:
        return self.headers["Nats-Msg-Id"]


EXPECTED_STREAM = "Nats-Expected-Stream"  # JetStream refuses the message on another stream


def encode(
    out: Outgoing,
    *,
    stream: str,
    source: str,
    notification_id: int,
    index: int,
    previous: int,
    timestamp: datetime | None,
    traceparent: str | None,
    tracestate: str | None,
    partition: int = 0,
) -> Prepared:
    position = message_position(notification_id, index)
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{notification_id}.{index}",
        "source": source,
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
    return Prepared(
        subject=subject_for(out.event_type, partition),
        payload=orjson.dumps(envelope),
        headers={
            "Nats-Msg-Id": f"{source}:{notification_id}:{index}",
            EXPECTED_STREAM: stream,
            **tracing.headers_of(traceparent, tracestate),
        },
        position=position,
        partition=partition,
    )


class EventTooLarge(PayloadTooLarge):
    """What was asked would publish a message larger than the bus accepts; nothing recorded."""

    def __init__(self, size: int, limit: int, event_type: str) -> None:
        super().__init__(
            f"Cette demande produirait un message de {size} octets ({event_type}), au-delà de "
            f"la limite de {limit} octets des échanges entre services : rien n'a été "
            "enregistré. Raccourcissez les textes ou envoyez moins de lignes à la fois.",
            limit_bytes=limit,
        )
        self.size = size
        self.limit = limit


class OutboxGuard:
    """Refuses, before it is stored, a unit of work the relay could not publish.

    ``limit`` is the bus's ``max_payload``; the service lowers it to what the server announces
    when that is smaller than configured (``ServiceRuntime.start``)."""

    def __init__(self, translate: Translator, source: str, stream: str, limit: int) -> None:
        self.translate = translate
        self.source = source
        self.stream = stream
        self.limit = limit

    def check(self, domain_events: Iterable[object]) -> None:
        for domain_event in domain_events:
            traceparent, tracestate = tracing.stamped(domain_event)
            outgoing = self.translate(domain_event)
            if len(outgoing) > EVENTS_PER_NOTIFICATION:
                raise Unprocessable(
                    f"Cette demande produirait {len(outgoing)} messages pour un même "
                    f"enregistrement (au plus {EVENTS_PER_NOTIFICATION}) : rien n'a été enregistré."
                )
            for index, out in enumerate(outgoing):
                message = encode(
                    out,
                    stream=self.stream,
                    source=self.source,
                    notification_id=_WIDEST_NOTIFICATION_ID,
                    index=index,
                    previous=message_position(_WIDEST_NOTIFICATION_ID, 0),
                    timestamp=getattr(domain_event, "timestamp", None),
                    traceparent=traceparent,
                    tracestate=tracestate,
                    partition=MAX_PARTITIONS - 1,  # the widest subject
                )
                if message.size > self.limit:
                    log.warning(
                        "refused a unit of work too large to publish",
                        extra={"type": out.event_type, "size": message.size, "limit": self.limit},
                    )
                    raise EventTooLarge(message.size, self.limit, out.event_type)
