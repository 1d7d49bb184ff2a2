"""A tiny producer and consumer built on the shared runtime, for testing the runtime alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar
from uuid import UUID

import orjson
from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate, event
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.envelope import CloudEvent
from contracts.events import ContractEvent
from contracts.subjects import SUBJECT_PREFIX
from services.runtime.consumer import ConsumerSpec
from services.runtime.messages import HandlerTable
from services.runtime.nats import ensure_consumer, ensure_deadletter_stream, ensure_stream
from services.runtime.outbox import Outgoing
from services.runtime.store import ServiceApplication


class Counter(Aggregate):
    @event("Created")
    def __init__(self, name: str) -> None:
        self.name = name
        self.total = 0

    @event("Incremented")
    def increment(self, by: int) -> None:
        self.total += by


class Upstream(ServiceApplication):
    name = "Upstream"


class Tick(ContractEvent):
    """A counter moved one step (the sample producer's only published event)."""

    NAME: ClassVar[str] = "tick"
    counter: str = ""
    step: int


def tick_of(service: str) -> type[Tick]:
    """The ``tick`` event of a sample producing service (each test has its own service)."""
    return type("Tick", (Tick,), {"SERVICE": service, "__doc__": Tick.__doc__})


class SampleTranslator:
    """Created stays internal; Incremented(by=n) publishes n ticks (several per notification)."""

    def __init__(self, service: str) -> None:
        self.model = tick_of(service)
        self.event_type = self.model.event_type()

    def __call__(self, domain_event: Any) -> Sequence[Outgoing]:
        if isinstance(domain_event, Counter.Incremented):
            return [
                Outgoing(
                    self.model(counter=str(domain_event.originator_id), step=i), self.event_type
                )
                for i in range(domain_event.by)
            ]
        return []


class Tally(Aggregate):
    """Downstream effect: which upstream events were applied, in which order."""

    @staticmethod
    def create_id(key: str) -> UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"tally:{key}")

    @event("Opened")
    def __init__(self, key: str) -> None:
        self.key = key
        self.seen: list[str] = []

    @event("Counted")
    def count(self, event_id: str) -> None:
        self.seen.append(event_id)


class Downstream(ServiceApplication):
    name = "Downstream"

    def tally(self) -> Tally | None:
        return self.get_optional(Tally.create_id("all"), Tally)


def spec(app: Downstream, service: str, **kw: Any) -> ConsumerSpec:
    """A consumer of ``service``'s ticks that tallies each one's id."""
    model = tick_of(service)

    def count(_: Tick, ce: CloudEvent, unit: ProcessingEvent[UUID]) -> None:
        tally = app.get_in(unit, Tally.create_id("all"), Tally) or Tally(key="all")
        tally.count(event_id=ce.id)
        unit.collect_events(tally)

    table = HandlerTable(service, catalog={model.event_type(): model}).on(model, count)
    return ConsumerSpec(f"D_{service}", table, **kw)


def unique_service() -> str:
    return "t" + uuid.uuid4().hex[:10]


async def provision_sample(js: JetStreamContext, service: str) -> None:
    """What provisioning does for a real service, for a sample one: its stream ``S_<service>``,
    the durable ``D_<service>`` on it, and the dead-letter stream of its consumer's service
    ``down<service>``."""
    await ensure_stream(js, f"S_{service}", service, replicas=1)
    await ensure_consumer(js, f"S_{service}", f"D_{service}", max_ack_pending=2000)
    await ensure_deadletter_stream(js, f"down{service}", replicas=1)


async def stream_events(
    js: JetStreamContext, service: str, expected: int, timeout: float = 20
) -> list[dict[str, Any]]:
    """Every message on the service's subjects, read with an ordered consumer."""
    sub = await js.subscribe(
        f"{SUBJECT_PREFIX}.{service}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    out: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                info = await js.stream_info(f"S_{service}")
                if len(out) >= info.state.messages and len(out) >= expected:
                    break
                continue
            out.append(orjson.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return out
