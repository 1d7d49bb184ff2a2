"""What a consumer cannot apply never blocks its lane: it is terminated, copied with its
reason to the dead-letter stream, counted, and (when it holds a position of the producer's
chain) its position is recorded as passed, so the next events are applied. An operator lists
dead letters and replays one after a fix, once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import orjson
import pytest
from eventsourcing.application import ProcessingEvent
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.envelope import CloudEvent
from contracts.events import ContractEvent
from contracts.subjects import deadletter_stream
from services.runtime import deadletters
from services.runtime.consumer import ConsumerSpec, EventConsumer
from services.runtime.messages import HandlerTable, Rejected
from services.runtime.metrics import Metrics
from tests.runtime.sample import (
    Downstream,
    Tally,
    Tick,
    provision_sample,
    tick_of,
    unique_service,
)
from tests.runtime.test_consumer import envelope, setup
from tests.runtime.test_metrics import sample
from tests.support.processes import eventually


def _table(app: Downstream, service: str, model: type[ContractEvent] | None = None) -> Any:
    model = model or tick_of(service)

    def count(data: Any, ce: CloudEvent, unit: ProcessingEvent[UUID]) -> None:
        if getattr(data, "step", None) == 13:
            raise Rejected("thirteen is refused by this handler")
        tally = app.get_in(unit, Tally.create_id("all"), Tally) or Tally(key="all")
        tally.count(event_id=ce.id)
        unit.collect_events(tally)

    return HandlerTable(service, catalog={model.event_type(): model}).on(model, count)


def _consumer(
    app: Downstream, js: JetStreamContext, service: str, metrics: Metrics | None = None
) -> EventConsumer:
    return EventConsumer(
        app,
        ConsumerSpec(f"D_{service}", _table(app, service)),
        js,
        service=f"down{service}",
        stream=f"S_{service}",
        upstream=service,
        fetch_timeout=0.2,
        retry_delay=0.05,
        metrics=metrics,
    )


def _event(service: str, position: int, previous: int, **changes: Any) -> bytes:
    body = orjson.loads(envelope(service, position, previous))
    body.update(changes)
    return orjson.dumps(body)


async def _drain(c: EventConsumer, done: Any, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        assert loop.time() < deadline, "the consumer did not get through in time"
        await c.consume_once()


def _seen(app: Downstream) -> list[str]:
    tally = app.tally()
    return tally.seen if tally is not None else []


async def test_bad_messages_go_to_the_dead_letter_stream_and_the_chain_goes_on(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    await js.publish(subject, envelope(service, 1000, 0))
    await js.publish(subject, b"\x00 not json at all")
    # From another source, claiming the next position: it must not move the chain.
    await js.publish(subject, _event(service, 2000, 1000, source="/certibloc/evil"))
    await js.publish(subject, _event(service, 2000, 1000, data={"step": "two"}))  # invalid
    # A later version of the type: skipped as forward-compatible, its position passes.
    v2 = f"fr.certibloc.{service}.tick.v2"
    await js.publish(f"certibloc.{service}.p0.tick.v2", _event(service, 3000, 2000, type=v2))
    await js.publish(subject, envelope(service, 4000, 3000))
    app = Downstream(env=sqlite_env)
    metrics = Metrics()
    c = _consumer(app, js, service, metrics)
    await c.start()
    await _drain(c, lambda: _seen(app) == ["e1000", "e4000"])

    assert app.process_recorder.max_tracking_id(service) == 4000

    async def settled() -> bool:  # acks and terminations are sent, not waited for
        info = await js.consumer_info(f"S_{service}", f"D_{service}")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(settled, 10, "every message acknowledged or terminated, none left pending")
    letters = await deadletters.list_letters(js, f"down{service}")
    reasons = [
        (letter.summary()["reason_code"], letter.summary()["stream_sequence"]) for letter in letters
    ]
    assert sorted(reasons) == [("foreign_source", 3), ("invalid", 4), ("malformed", 2)]
    invalid = next(letter for letter in letters if letter.summary()["reason_code"] == "invalid")
    assert invalid.payload == _event(service, 2000, 1000, data={"step": "two"})
    assert "step" in invalid.summary()["reason"]
    assert invalid.summary()["consumer"] == f"D_{service}"
    assert invalid.summary()["subject"] == subject

    text = metrics.exposition().decode()
    labels = {"consumer": f"D_{service}", "stream": f"S_{service}"}
    for reason in ("malformed", "foreign_source", "invalid"):
        assert sample(text, "certibloc_consumer_dead_letters_total", reason=reason, **labels) == 1
    assert sample(text, "certibloc_consumer_skipped_total", reason="unknown_type", **labels) == 1
    app.close()


async def test_a_message_its_handler_rejects_is_dead_lettered_and_the_rest_applied(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    await js.publish(subject, envelope(service, 1000, 0))
    await js.publish(subject, _event(service, 2000, 1000, data={"step": 13}))
    await js.publish(subject, envelope(service, 3000, 2000))
    app = Downstream(env=sqlite_env)
    c = _consumer(app, js, service)
    await c.start()
    await _drain(c, lambda: _seen(app) == ["e1000", "e3000"])
    (letter,) = await deadletters.list_letters(js, f"down{service}")
    assert letter.summary()["reason_code"] == "rejected"
    assert "thirteen" in letter.summary()["reason"]
    assert app.process_recorder.max_tracking_id(service) == 3000
    app.close()


class LenientTick(Tick):
    """The fix: this version of the contract takes the step as text too."""

    step: int | str  # type: ignore[assignment]


async def test_a_dead_letter_is_replayed_after_a_fix_once(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    await js.publish(subject, envelope(service, 1000, 0))
    await js.publish(subject, _event(service, 2000, 1000, data={"step": "two"}))
    app = Downstream(env=sqlite_env)
    c = _consumer(app, js, service)
    await c.start()
    await _drain(c, lambda: app.process_recorder.max_tracking_id(service) == 2000)
    (letter,) = await deadletters.list_letters(js, f"down{service}")

    unfixed = deadletters.replay(app, _table(app, service), letter)
    assert not unfixed.applied and "still refused" in unfixed.detail
    fixed_model: type[ContractEvent] = type(
        "Tick", (LenientTick,), {"SERVICE": service, "__doc__": "fixed"}
    )
    fixed = _table(app, service, fixed_model)
    outcome = deadletters.replay(app, fixed, letter)
    assert outcome.applied, outcome.detail
    assert _seen(app) == ["e1000", "e2000"]
    again = deadletters.replay(app, fixed, letter)
    assert not again.applied and "already replayed" in again.detail
    assert _seen(app) == ["e1000", "e2000"]
    app.close()


async def test_a_dead_letter_copied_twice_after_a_crash_is_listed_once(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    """The copy is published before the position is recorded; a crash in between sends it
    again on redelivery (JetStream drops the same Nats-Msg-Id within its window; the listing
    shows one entry per original message in any case)."""
    js, service = await setup(nc)
    letter = deadletters.DeadLetter(
        payload=b"garbage",
        reason_code="malformed",
        reason="not a CloudEvent",
        consumer=f"D_{service}",
        stream=f"S_{service}",
        stream_sequence=7,
        subject=f"certibloc.{service}.p0.tick.v1",
    )
    app = Downstream(env=sqlite_env)
    c = _consumer(app, js, service)
    await c.start()
    await deadletters.publish(js, f"down{service}", [letter])
    await deadletters.publish(js, f"down{service}", [letter])
    listed = await deadletters.list_letters(js, f"down{service}")
    assert [item.summary()["stream_sequence"] for item in listed] == [7]
    info = await js.stream_info(deadletter_stream(f"down{service}"))
    assert info.state.messages == 1  # deduplicated by JetStream within its window
    app.close()


async def test_the_consumer_waits_for_its_provisioning(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    """A service creates no stream and no consumer (the bus's permissions forbid it): it waits
    for provisioning to create them."""
    js = nc.jetstream()
    service = unique_service()
    app = Downstream(env=sqlite_env)
    c = _consumer(app, js, service)
    with pytest.raises(NotFoundError):
        await c.start()  # not provisioned yet
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))  # retries until its consumer exists
    try:
        await provision_sample(js, service)
        await js.publish(f"certibloc.{service}.p0.tick.v1", envelope(service, 1000, 0))
        await eventually(lambda: _seen(app) == ["e1000"], 15, "the late stream's first event")
    finally:
        stop.set()
        await task
        await js.delete_stream(f"S_{service}")
    app.close()


async def test_a_message_overlapping_the_chain_is_dead_lettered_not_waited_for(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    """No correct relay publishes a message whose predecessor is behind what was applied and
    which is itself ahead of it: it is refused, out of the chain, instead of coming back
    forever."""
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    await js.publish(subject, envelope(service, 1000, 0))
    await js.publish(subject, envelope(service, 2000, 1000))
    await js.publish(subject, _event(service, 2500, 1000))  # overlaps 2000
    await js.publish(subject, envelope(service, 3000, 2000))
    app = Downstream(env=sqlite_env)
    c = _consumer(app, js, service)
    await c.start()
    await _drain(c, lambda: _seen(app) == ["e1000", "e2000", "e3000"])
    (letter,) = await deadletters.list_letters(js, f"down{service}")
    assert letter.summary()["reason_code"] == "invalid"
    assert "overlaps" in letter.summary()["reason"]
    assert app.process_recorder.max_tracking_id(service) == 3000


async def test_a_first_delivery_of_a_passed_position_is_counted_and_logged(
    nc: Client, sqlite_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Acknowledged without effect, as every redelivery, but never silently: it is a copy
    published again, or a producer declaring positions it should not."""
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    await js.publish(subject, envelope(service, 1000, 0))
    await js.publish(subject, envelope(service, 2000, 1000))
    app = Downstream(env=sqlite_env)
    metrics = Metrics()
    c = _consumer(app, js, service, metrics)
    await c.start()
    await _drain(c, lambda: len(_seen(app)) == 2)
    await js.publish(subject, envelope(service, 1000, 0))  # the same event, published again
    caplog.set_level(logging.WARNING, logger="services.runtime.consumer")
    await _drain(c, lambda: c.instruments is not None and _count(metrics, service) == 1)
    assert _seen(app) == ["e1000", "e2000"]
    assert any("already passed" in r.getMessage() for r in caplog.records)


def _count(metrics: Metrics, service: str) -> float:
    text = metrics.exposition().decode()
    labels = {"consumer": f"D_{service}", "stream": f"S_{service}"}
    return sample(text, "certibloc_consumer_duplicates_total", **labels) or 0


async def test_a_consumer_waiting_too_long_says_so_and_clears_when_it_moves(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    await js.publish(subject, envelope(service, 2000, 1000))  # its predecessor is missing
    app = Downstream(env=sqlite_env)
    metrics = Metrics()
    c = _consumer(app, js, service, metrics)
    c.stuck_after = 0.3
    await c.start()
    labels = {"consumer": f"D_{service}", "stream": f"S_{service}"}

    def stuck() -> float | None:
        return sample(metrics.exposition().decode(), "certibloc_consumer_stuck", **labels)

    await _drain(c, lambda: c.problem() is not None)
    assert "attend 1000" in (c.problem() or "") and stuck() == 1
    await js.publish(subject, envelope(service, 1000, 0))
    await _drain(c, lambda: _seen(app) == ["e1000", "e2000"] and c.problem() is None)
    assert stuck() == 0


async def test_a_handler_that_keeps_failing_makes_the_consumer_stuck(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    await js.publish(f"certibloc.{service}.p0.tick.v1", envelope(service, 1000, 0))
    app = Downstream(env=sqlite_env)
    model = tick_of(service)

    def broken(data: Any, ce: CloudEvent, unit: ProcessingEvent[UUID]) -> None:
        raise ConnectionError("the store went away")

    table = HandlerTable(service, catalog={model.event_type(): model}).on(model, broken)
    c = EventConsumer(
        app,
        ConsumerSpec(f"D_{service}", table),
        js,
        service=f"down{service}",
        stream=f"S_{service}",
        upstream=service,
        fetch_timeout=0.2,
        retry_delay=0.05,
        stuck_after=0.3,
    )
    await c.start()
    await _drain(c, lambda: c.problem() is not None)
    assert "ConnectionError: the store went away" in (c.problem() or "")


async def test_rejections_end_the_batch_so_a_flood_of_them_costs_linear_work(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    n = 40
    for p in range(1, n + 1):
        step = 13 if p % 2 == 0 else 100 + p  # every other one is refused by its handler
        await js.publish(subject, _event(service, p * 1000, (p - 1) * 1000, data={"step": step}))
    app = Downstream(env=sqlite_env)
    calls = {"n": 0}
    model = tick_of(service)

    def counting(data: Any, ce: CloudEvent, unit: ProcessingEvent[UUID]) -> None:
        calls["n"] += 1
        if data.step == 13:
            raise Rejected("thirteen")
        tally = app.get_in(unit, Tally.create_id("all"), Tally) or Tally(key="all")
        tally.count(event_id=ce.id)
        unit.collect_events(tally)

    table = HandlerTable(service, catalog={model.event_type(): model}).on(model, counting)
    c = EventConsumer(
        app,
        ConsumerSpec(f"D_{service}", table),
        js,
        service=f"down{service}",
        stream=f"S_{service}",
        upstream=service,
        fetch_timeout=0.2,
        retry_delay=0.05,
    )
    await c.start()
    await _drain(c, lambda: app.process_recorder.max_tracking_id(service) == n * 1000, 30)
    assert len(_seen(app)) == n // 2
    assert len(await deadletters.list_letters(js, f"down{service}")) == n // 2
    assert calls["n"] <= 2 * n  # each message handled about once, each rejection redoes at most one


async def test_a_message_is_replayed_once_however_many_copies_the_stream_holds(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    await js.publish(subject, envelope(service, 1000, 0))
    await js.publish(subject, _event(service, 2000, 1000, data={"step": "two"}))
    app = Downstream(env=sqlite_env)
    c = _consumer(app, js, service)
    await c.start()
    await _drain(c, lambda: app.process_recorder.max_tracking_id(service) == 2000)
    (first,) = await deadletters.list_letters(js, f"down{service}")
    # A second copy, as a crash after the duplicate window would leave (another Nats-Msg-Id).
    headers = {**first.headers, "Nats-Msg-Id": "another-copy"}
    await js.publish(
        first.headers["Certibloc-Dead-Subject"].replace(
            f"certibloc.{service}.p0.tick.v1", f"certibloc.deadletter.down{service}.D_{service}"
        ),
        first.payload,
        headers=headers,
    )
    info = await js.stream_info(deadletter_stream(f"down{service}"))
    second = await deadletters.read(js, f"down{service}", info.state.last_seq)
    assert second is not None and second.sequence != first.sequence
    fixed_model: type[ContractEvent] = type(
        "Tick", (LenientTick,), {"SERVICE": service, "__doc__": "fixed"}
    )
    fixed = _table(app, service, fixed_model)
    assert deadletters.replay(app, fixed, first).applied
    again = deadletters.replay(app, fixed, second)
    assert not again.applied and "already replayed" in again.detail
    assert _seen(app) == ["e1000", "e2000"]


async def test_a_message_that_filled_the_bus_is_dead_lettered_cut_and_the_connection_stays(
    nats_server: Any, nc: Client, sqlite_env: dict[str, str]
) -> None:
    """The server counts headers against max_payload: a copy of a message that filled the
    limit would not fit beside the dead-letter headers (and the server would close the
    connection); it is cut to fit, and says so."""
    js, service = await setup(nc)
    subject = f"certibloc.{service}.p0.tick.v1"
    await js.publish(subject, envelope(service, 1000, 0))
    await js.publish(subject, b"x" * (nc.max_payload - 64))
    await js.publish(subject, envelope(service, 2000, 1000))
    client = await nats_server.connect()
    app = Downstream(env=sqlite_env)
    c = EventConsumer(
        app,
        ConsumerSpec(f"D_{service}", _table(app, service)),
        client.jetstream(),
        service=f"down{service}",
        stream=f"S_{service}",
        upstream=service,
        fetch_timeout=0.2,
        retry_delay=0.05,
        max_payload=client.max_payload,
    )
    try:
        await c.start()
        await _drain(c, lambda: _seen(app) == ["e1000", "e2000"])
        assert client.is_connected
        (letter,) = await deadletters.list_letters(js, f"down{service}")
        summary = letter.summary()
        assert summary["reason_code"] == "malformed" and summary["truncated"]
        assert summary["bytes"] < nc.max_payload - 64
    finally:
        await client.close()
