"""Feed contract events to a service's handlers in this process, without NATS: encoded as its
producer's relay encodes them, parsed as its consumer parses them, applied and recorded with
the upstream position, as the consumer would. For testing what a handler does, in a blink."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Tracking

from contracts.events import ContractEvent
from services.runtime.consumer import BeforeCommit
from services.runtime.messages import HandlerTable, Message, Unit
from services.runtime.outbox import Outgoing, encode
from services.runtime.store import ServiceApplication


@dataclass
class Feeder:
    app: ServiceApplication
    table: HandlerTable
    before_commit: BeforeCommit | None = None
    notification_id: int = 0
    last: int = field(default=0)

    def encode(self, data: ContractEvent) -> tuple[bytes, str]:
        self.notification_id += 1
        message = encode(
            Outgoing(data, data.event_type()),
            stream=f"CERTIBLOC_{self.table.producer.upper()}",
            source=self.table.source,
            notification_id=self.notification_id,
            index=0,
            previous=self.last,
            timestamp=datetime.now(UTC),
            traceparent=None,
            tracestate=None,
        )
        self.last = message.position
        return message.payload, message.subject

    def send(self, data: ContractEvent) -> Message:
        """Apply one event; returns the parsed message (its ``dead`` says if it was refused)."""
        payload, subject = self.encode(data)
        message = self.table.parse(payload, subject)
        unit: Unit = ProcessingEvent()
        if message.handler is not None:
            message.apply(unit)
            if self.before_commit is not None:
                self.before_commit(unit)
        self.app.record(unit, Tracking(self.table.producer, self.last))
        return message
