"""The outbox relay: every stored event reaches the stream exactly once, in order, whatever
happens to the relay between publishing and storing its position."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from nats.aio.client import Client

from contracts.envelope import notification_of
from services.runtime.nats import ensure_stream
from services.runtime.relay import OutboxRelay
from tests.runtime.sample import Counter, SampleTranslator, Upstream, stream_events, unique_service


def _record(app: Upstream, counters: int, increments: int) -> int:
    """Store some events; return how many ticks they publish (1 + 2 per counter round)."""
    published = 0
    for c in range(counters):
        counter = Counter(name=f"c{c}")
        for i in range(increments):
            counter.increment(by=1 + i % 3)
            published += 1 + i % 3
        app.save(counter)
    return published


def assert_exactly_once_in_order(events: list[dict[str, Any]], expected: int) -> None:
    positions = [e["position"] for e in events]
    assert len(events) == expected
    assert len(set(positions)) == expected, "an event was published twice"
    assert positions == sorted(positions)
    previous = 0
    for e in events:
        assert e["previous"] == previous, "the previous-position chain is broken"
        previous = e["position"]


async def test_relay_publishes_every_event_once_with_a_gapless_chain(
    nc: Client, store_env: dict[str, str]
) -> None:
    service = unique_service()
    app = Upstream(env=store_env)
    expected = _record(app, counters=20, increments=10)
    js = nc.jetstream()
    await ensure_stream(js, f"S_{service}", service, replicas=1)
    relay = OutboxRelay(
        app,
        SampleTranslator(service),
        js,
        source=f"/certibloc/{service}",
        stream=f"S_{service}",
        batch_size=37,
    )
    while await relay.relay_once():
        pass
    events = await stream_events(js, service, expected)
    assert_exactly_once_in_order(events, expected)
    assert await relay.position() == events[-1]["position"]
    assert events[0]["type"] == f"fr.certibloc.{service}.tick.v1"
    assert events[0]["specversion"] == "1.0"
    app.close()


async def test_relay_crash_between_publish_and_position_republishes_without_duplicates(
    nc: Client, store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = unique_service()
    app = Upstream(env=store_env)
    expected = _record(app, counters=10, increments=12)
    js = nc.jetstream()
    await ensure_stream(js, f"S_{service}", service, replicas=1)

    # First relay: publishes two batches, then dies before storing the third position.
    first = OutboxRelay(
        app,
        SampleTranslator(service),
        js,
        source=f"/certibloc/{service}",
        stream=f"S_{service}",
        batch_size=25,
    )
    recorder = app.process_recorder
    real_record = app.record_positions
    calls = {"n": 0}

    def dying_record(trackings: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("relay killed")
        real_record(trackings)

    monkeypatch.setattr(app, "record_positions", dying_record)

    async def relay_all() -> None:
        while await first.relay_once():
            pass

    with pytest.raises(ConnectionError):
        await relay_all()
    monkeypatch.setattr(app, "record_positions", real_record)
    stored = recorder.max_tracking_id(first.tracking_name)
    assert stored is not None

    # A new relay (a restarted process) resumes from the stored position.
    second = OutboxRelay(
        app,
        SampleTranslator(service),
        js,
        source=f"/certibloc/{service}",
        stream=f"S_{service}",
        batch_size=25,
    )
    assert await second.position() == stored
    while await second.relay_once():
        pass
    events = await stream_events(js, service, expected)
    assert_exactly_once_in_order(events, expected)
    app.close()


async def test_running_relay_follows_new_writes(nc: Client, sqlite_env: dict[str, str]) -> None:
    service = unique_service()
    app = Upstream(env=sqlite_env)
    js = nc.jetstream()
    await ensure_stream(js, f"S_{service}", service, replicas=1)
    relay = OutboxRelay(
        app,
        SampleTranslator(service),
        js,
        source=f"/certibloc/{service}",
        stream=f"S_{service}",
        idle_seconds=1.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        expected = await asyncio.to_thread(_record, app, 3, 4)
        events = await stream_events(js, service, expected)
        assert_exactly_once_in_order(events, expected)
        # Internal events (Created) publish nothing but still advance the scan.
        assert notification_of(events[-1]["position"]) <= app.recorder.max_notification_id()  # type: ignore[attr-defined]
    finally:
        stop.set()
        await task
        app.close()


@pytest.mark.parametrize("survivors", ["none", "part of a notification"])
async def test_relay_republishes_what_the_stream_lost_after_acknowledging_it(
    nc: Client, sqlite_env: dict[str, str], survivors: str
) -> None:
    """A single server that crashed before fsyncing, or a stream recreated empty, has lost
    messages the relay recorded as published: the relay resumes from what the stream holds
    (even inside one notification's events) and the chain is whole again."""
    service = unique_service()
    app = Upstream(env=sqlite_env)
    expected = _record(app, counters=6, increments=5)
    js = nc.jetstream()
    stream = f"S_{service}"
    await ensure_stream(js, stream, service, replicas=1)

    def relay() -> OutboxRelay:
        return OutboxRelay(
            app, SampleTranslator(service), js, source=f"/certibloc/{service}", stream=stream
        )

    first = relay()
    while await first.relay_once():
        pass
    published = [await js.get_msg(stream, seq=seq) for seq in range(1, expected + 1)]
    notifications = [notification_of(orjson.loads(m.data)["position"]) for m in published]
    kept = 0
    if survivors != "none":  # stop between two events of the same notification
        kept = next(k for k in range(3, expected) if notifications[k - 1] == notifications[k])
    await js.delete_stream(stream)
    await ensure_stream(js, stream, service, replicas=1)
    for message in published[:kept]:
        await js.publish(message.subject, message.data, headers=message.headers)

    second = relay()  # a restarted process, whose stored position is past the stream's end
    while await second.relay_once():
        pass
    events = await stream_events(js, service, expected)
    assert_exactly_once_in_order(events, expected)
    app.close()
