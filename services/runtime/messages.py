"""Typed messages at the consumer: each one parsed on its own into the contract model of its
``type`` and handed to the handler a table names for that type.

What a message can turn out to be (``parse``), before anything is applied:

- *accepted*: a CloudEvent from the stream's producer, of a type this consumer handles, whose
  ``data`` fits the type's model: its handler gets the model;
- *passed*: from the producer, of a type this consumer does not handle, or of a type the
  producer's catalog does not hold (a later version: skipped as forward-compatible);
- *dead*: not a CloudEvent (``malformed``), from another source (``foreign_source``), or data
  that does not fit its model (``invalid``); a handler may also refuse an accepted message for
  good by raising ``Rejected`` (``rejected``). Dead messages are terminated and copied to the
  consumer's dead-letter stream.

A passed message, and a dead one from the producer (``invalid``, ``rejected``), still hold a
position of the producer's chain: the consumer records it as passed, so the chain goes on.
A malformed or foreign message holds none, and is not allowed to move the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from pydantic import ValidationError

from contracts.catalog import events_of
from contracts.envelope import CloudEvent
from contracts.events import ContractEvent
from contracts.subjects import partition_in, source_for, subject_for

M = TypeVar("M", bound=ContractEvent)
Unit = ProcessingEvent[UUID]
Handler = Callable[[M, CloudEvent, Unit], None]

MALFORMED: Final = "malformed"
FOREIGN_SOURCE: Final = "foreign_source"
INVALID: Final = "invalid"
REJECTED: Final = "rejected"
UNKNOWN_TYPE: Final = "unknown_type"
REASON_MAX = 500  # characters of a dead letter's reason


class Rejected(Exception):
    """Raised by a handler for a message it can never apply (e.g. a bloc the referential does
    not hold): the message goes to the dead-letter stream and the chain goes on."""


@dataclass(frozen=True)
class _Route(Generic[M]):
    model: type[M]
    handler: Handler[M]


class HandlerTable:
    """``type`` -> (contract model, handler) for the messages of one producer's stream."""

    def __init__(
        self, producer: str, catalog: Mapping[str, type[ContractEvent]] | None = None
    ) -> None:
        self.producer = producer
        self.source = source_for(producer)
        # The producer's published events (contracts.catalog); a test may bring its own.
        self.catalog: Mapping[str, type[ContractEvent]] = (
            catalog if catalog is not None else events_of(producer)
        )
        self._routes: dict[str, _Route[Any]] = {}

    def on(self, model: type[M], handler: Handler[M]) -> HandlerTable:
        name = model.event_type()
        if self.catalog.get(name) is not model:
            raise ValueError(f"{name} is not an event {self.producer} publishes")
        if name in self._routes:
            raise ValueError(f"two handlers for {name}")
        self._routes[name] = _Route(model, handler)
        return self

    @property
    def handled(self) -> frozenset[str]:
        return frozenset(self._routes)

    def parse(self, payload: bytes, subject: str | None = None) -> Message:
        """What ``payload`` (published on ``subject``) is for this consumer; never raises.
        (Its subject must be the one its type and partition make.)"""
        try:
            event = CloudEvent.model_validate_json(payload)
        except ValidationError as error:
            return Message(None, dead=(MALFORMED, "not a CloudEvent: " + _summary(error)))
        if event.source != self.source:
            return Message(
                event,
                dead=(FOREIGN_SOURCE, f"source {event.source!r} is not this stream's producer"),
            )
        model = self.catalog.get(event.type)
        if model is None:
            return Message(event, skip=UNKNOWN_TYPE)
        if subject is not None and subject != subject_for(event.type, partition_in(subject) or 0):
            return Message(event, dead=(INVALID, f"type {event.type} published on {subject}"))
        route = self._routes.get(event.type)
        if route is None:
            return Message(event)  # a type this consumer has no use for
        try:
            data = route.model.model_validate(event.data)
        except ValidationError as error:
            return Message(event, dead=(INVALID, f"{event.type}: " + _summary(error)))
        return Message(event, data=data, handler=route.handler)


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed message: its envelope (when it is a CloudEvent) and what to do with it."""

    event: CloudEvent | None
    data: ContractEvent | None = None
    handler: Handler[Any] | None = None
    dead: tuple[str, str] | None = None  # (reason code, reason)
    skip: str | None = None  # why a message from the producer is passed over, for a metric

    @property
    def in_chain(self) -> bool:
        """Whether this message holds a position of the producer's chain."""
        return self.event is not None and (self.dead is None or self.dead[0] == INVALID)

    def apply(self, unit: Unit) -> None:
        assert self.handler is not None and self.data is not None and self.event is not None
        self.handler(self.data, self.event, unit)


def _summary(error: ValidationError) -> str:
    """The validation errors in one line: field paths and messages, never the input values."""
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in item.get("loc", ())) or "(message)"
        parts.append(f"{where}: {item.get('msg', '')}")
    more = error.error_count() - len(parts)
    text = "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
    return text[:REASON_MAX]
