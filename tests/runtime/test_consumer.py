"""The JetStream consumer: each upstream event has exactly one effect, in order, whatever
NATS redelivers and however many replicas compete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.runtime.consumer import EventConsumer, Raw
from tests.runtime.sample import Downstream, provision_sample, spec, unique_service
from tests.support.processes import wait_for


def envelope(service: str, position: int, previous: int) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"e{position}",
            "source": f"/certibloc/{service}",
            "type": f"fr.certibloc.{service}.tick.v1",
            "time": "2026-07-03T10:00:00+00:00",
            "position": position,
            "previous": previous,
            "data": {"step": position},
        }
    )


async def publish(
    js: JetStreamContext,
    service: str,
    items: list[tuple[int, int]],
    *,
    msg_id: Callable[[int], str] | None = None,
) -> None:
    for position, previous in items:
        headers = {"Nats-Msg-Id": msg_id(position)} if msg_id else None
        await js.publish(
            f"certibloc.{service}.p0.tick.v1",
            envelope(service, position, previous),
            headers=headers,
        )


async def setup(nc: Client) -> tuple[JetStreamContext, str]:
    service = unique_service()
    js = nc.jetstream()
    await provision_sample(js, service)
    return js, service


def consumer(app: Downstream, js: JetStreamContext, service: str, **kw: object) -> EventConsumer:
    return EventConsumer(
        app,
        spec(app, service),
        js,
        service=f"down{service}",
        stream=f"S_{service}",
        upstream=service,
        fetch_timeout=0.2,
        retry_delay=0.05,
        **kw,
    )  # type: ignore[arg-type]


async def drain(c: EventConsumer, until: Callable[[], bool], timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until():
        assert loop.time() < deadline, "consumer did not catch up in time"
        await c.consume_once()


async def test_same_message_twice_has_one_effect(nc: Client, store_env: dict[str, str]) -> None:
    js, service = await setup(nc)
    chain = [(1000, 0), (2000, 1000), (3000, 2000)]
    await publish(js, service, chain)
    await publish(js, service, [(2000, 1000)])  # the same event again (outside dedupe)
    app = Downstream(env=store_env)
    c = consumer(app, js, service)
    await c.start()
    await drain(c, lambda: (t := app.tally()) is not None and len(t.seen) >= 3)
    # One more pass acks the duplicate without applying it.
    await c.consume_once()
    tally = app.tally()
    assert tally is not None
    assert tally.seen == ["e1000", "e2000", "e3000"]
    info = await js.consumer_info(f"S_{service}", f"D_{service}")
    assert info.num_pending == 0
    assert app.process_recorder.max_tracking_id(service) == 3000
    app.close()


async def test_restarted_consumer_redelivery_is_acked_not_reapplied(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    await publish(js, service, [(1000, 0), (2000, 1000)])
    app = Downstream(env=sqlite_env)
    first = consumer(app, js, service)
    await first.start()
    # Apply without acknowledging: what a crash between commit and ack leaves behind.
    msgs = await first._sub.fetch(2, timeout=1)
    raws = [Raw(m.data, m.subject, m.reply, (None, None)) for m in msgs]
    verdicts = await asyncio.to_thread(first._parse_and_apply, raws)
    assert verdicts.applied == 2
    for m in msgs:
        await m.nak()  # redeliver now rather than after ack_wait
    again = Downstream(env=sqlite_env)
    second = consumer(again, js, service)
    await second.start()
    await second.consume_once()
    tally = again.tally()
    assert tally is not None and tally.seen == ["e1000", "e2000"]
    assert second.applied_total == 0
    app.close()
    again.close()


async def test_event_arriving_before_its_predecessor_waits_for_it(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    await publish(js, service, [(2000, 1000)])  # the later event first
    app = Downstream(env=sqlite_env)
    c = consumer(app, js, service, batch_size=1)
    await c.start()
    await c.consume_once()
    assert app.tally() is None, "applied an event whose predecessor was missing"
    await publish(js, service, [(1000, 0)])
    await drain(c, lambda: (t := app.tally()) is not None and len(t.seen) == 2)
    tally = app.tally()
    assert tally is not None and tally.seen == ["e1000", "e2000"]
    app.close()


async def test_two_replicas_apply_each_event_exactly_once(
    nc: Client, store_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    count = 150
    await publish(js, service, [(p * 1000, (p - 1) * 1000) for p in range(1, count + 1)])
    a, b = Downstream(env=store_env), Downstream(env=store_env)
    ca, cb = consumer(a, js, service, batch_size=50), consumer(b, js, service, batch_size=50)
    await ca.start()
    await cb.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(ca.run(stop)), asyncio.create_task(cb.run(stop))]

    def done() -> bool:
        tally = a.tally()
        return tally is not None and len(tally.seen) >= count

    try:
        await asyncio.to_thread(wait_for, done, 30, 0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    tally = a.tally()
    assert tally is not None
    assert tally.seen == [f"e{p * 1000}" for p in range(1, count + 1)]
    a.close()
    b.close()
