"""A relay never stalls in silence: a message the bus refuses, or the same position failing
for too long, turns /readyz red, sets a metric naming the position and logs it; other streams
keep flowing, and the relay resumes by itself once the cause is gone.

With the outbox guard in place (``test_outbox_guard``) nothing a client sends can get a relay
stuck; these tests bypass the guard on purpose to prove the signal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from nats.aio.client import Client
from pydantic import ValidationError

from contracts import registry_v1 as v1
from services.runtime.http import create_app
from services.runtime.metrics import Metrics
from services.runtime.nats import ensure_stream
from services.runtime.outbox import Outgoing, contract
from services.runtime.relay import OutboxRelay
from tests.runtime.sample import Counter, SampleTranslator, Upstream, stream_events, unique_service
from tests.runtime.test_metrics import sample
from tests.support.processes import NatsServer, ServedApp, eventually


class Oversized(SampleTranslator):
    """The sample translator, but a counter named "huge" publishes a 200 kB tick."""

    def __call__(self, domain_event: Any) -> Sequence[Outgoing]:
        out = list(super().__call__(domain_event))
        if out and getattr(domain_event, "originator_id", None) == self.huge:
            out[0] = Outgoing(self.model(counter="x" * 200_000, step=0), self.event_type)
        return out

    huge: object = None


def _save(app: Upstream, name: str, by: int = 1) -> Counter:
    counter = Counter(name=name)
    counter.increment(by=by)
    app.save(counter)
    return counter


@pytest.fixture
async def small_bus(tmp_path: Path) -> Any:
    """A server whose max_payload (64 KiB) is below what the translator above produces."""
    server = NatsServer(store=tmp_path / "nats", max_payload=64 * 1024)
    server.start()
    nc = await server.connect()
    yield nc
    await nc.close()
    server.stop()


async def test_a_message_the_bus_refuses_makes_the_relay_stuck_loudly(
    small_bus: Client, sqlite_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    js = small_bus.jetstream()
    stuck_service, other_service = unique_service(), unique_service()
    for service in (stuck_service, other_service):
        await ensure_stream(js, f"S_{service}", service, replicas=1)
    app = Upstream(env=sqlite_env)
    translator = Oversized(stuck_service)
    _save(app, "before")
    translator.huge = _save(app, "huge").id
    metrics = Metrics()
    relay = OutboxRelay(
        app, translator, js, source="/certibloc/x", stream=f"S_{stuck_service}", metrics=metrics
    )
    other_app = Upstream(env={**sqlite_env, "SQLITE_DBNAME": sqlite_env["SQLITE_DBNAME"] + "2"})
    other = OutboxRelay(
        other_app,
        SampleTranslator(other_service),
        js,
        source="/certibloc/y",
        stream=f"S_{other_service}",
    )
    http = create_app(
        title="t",
        version="1",
        description="t",
        lifespan=None,
        readiness=[lambda: asyncio.sleep(0, relay.problem())],
        max_body_bytes=1024,
        metrics=metrics,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(other.run(stop))]
    caplog.set_level(logging.ERROR, logger="services.runtime.relay")
    try:
        with ServedApp(http) as served:
            await eventually(lambda: relay.stuck is not None, 10, "the relay reports itself stuck")
            assert relay.stuck is not None
            position = relay.stuck.position
            assert position == 4000 and relay.stuck.permanent  # notification 4: the huge tick
            async with httpx.AsyncClient() as client:
                ready = await client.get(f"{served.url}/readyz")
                assert ready.status_code == 503
                assert f"position {position}" in ready.json()["detail"]
            text = metrics.exposition().decode()  # what the internal endpoint serves
            stream = {"stream": f"S_{stuck_service}"}
            assert sample(text, "certibloc_relay_stuck", **stream) == 1
            assert sample(text, "certibloc_relay_stuck_position", **stream) == position
            logged = [r for r in caplog.records if r.getMessage().startswith("relay stuck")]
            assert logged and logged[0].__dict__["position"] == position
            assert "MaxPayloadError" in logged[0].__dict__["reason"]
            # What came before the refused message was published; other streams flow on.
            assert [e["position"] for e in await stream_events(js, stuck_service, 1)] == [2000]
            _save(other_app, "elsewhere", by=3)
            assert len(await stream_events(js, other_service, 3)) == 3
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        app.close()
        other_app.close()


async def test_a_position_failing_for_too_long_is_reported_then_clears_when_it_resumes(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    """No stream to publish to (deleted, say): retrying may fix that, so the relay keeps
    trying, but past ``stuck_after`` it says so; once the stream is back it resumes."""
    service = unique_service()
    js = nc.jetstream()
    app = Upstream(env=sqlite_env)
    _save(app, "c", by=2)
    metrics = Metrics()
    relay = OutboxRelay(
        app,
        SampleTranslator(service),
        js,
        source="/certibloc/x",
        stream=f"S_{service}",
        publish_timeout=0.5,
        stuck_after=0.5,
        metrics=metrics,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.stuck is not None, 15, "stuck after stuck_after")
        assert relay.stuck is not None and not relay.stuck.permanent
        assert relay.problem() is not None
        await ensure_stream(js, f"S_{service}", service, replicas=1)
        await eventually(lambda: relay.stuck is None, 30, "the relay resumes")
        assert len(await stream_events(js, service, 2)) == 2
        text = metrics.exposition().decode()
        assert sample(text, "certibloc_relay_stuck", stream=f"S_{service}") == 0
    finally:
        stop.set()
        await task
        app.close()


async def test_garbage_at_the_end_of_the_stream_does_not_stop_the_relay(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    """At every start a relay looks at the stream's end to catch up after a lost message; a
    message there that is not one of ours (only our credentials could put it there) is passed
    over, never trusted, never fatal."""
    service = unique_service()
    js = nc.jetstream()
    await ensure_stream(js, f"S_{service}", service, replicas=1)
    app = Upstream(env=sqlite_env)

    def relay() -> OutboxRelay:
        return OutboxRelay(
            app, SampleTranslator(service), js, source="/certibloc/x", stream=f"S_{service}"
        )

    _save(app, "a")
    await relay().relay_once()
    await js.publish(f"certibloc.{service}.p0.tick.v1", b"\xff{not a cloudevent")
    await js.publish(f"certibloc.{service}.p0.tick.v1", b'{"source": "/certibloc/other"}')
    _save(app, "b")
    restarted = relay()
    while await restarted.relay_once():
        pass
    last = (await js.stream_info(f"S_{service}")).state.last_seq
    bodies = [(await js.get_msg(f"S_{service}", seq=n)).data or b"" for n in range(1, last + 1)]
    ours = [orjson.loads(b)["position"] for b in bodies if b.startswith(b'{"specversion"')]
    assert ours == [2000, 4000]
    app.close()


async def test_a_stored_event_the_translation_fails_on_is_reported_at_once_with_its_position(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    service = unique_service()
    js = nc.jetstream()
    await ensure_stream(js, f"S_{service}", service, replicas=1)
    app = Upstream(env=sqlite_env)

    def broken(domain_event: Any) -> Sequence[Outgoing]:
        if isinstance(domain_event, Counter.Incremented):
            raise KeyError("a translation bug")
        return []

    _save(app, "a")
    relay = OutboxRelay(app, broken, js, source="/certibloc/x", stream=f"S_{service}")
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.stuck is not None, 10, "stuck at once")
        assert relay.stuck is not None and relay.stuck.permanent
        assert relay.stuck.position == 2000  # notification 2, the Incremented event
        assert "translation failed: KeyError" in (relay.problem() or "")
    finally:
        stop.set()
        await task
        app.close()


def test_a_stored_event_todays_contract_refuses_is_published_for_its_consumers_to_refuse(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Events stored before a bound existed must neither stop the relay nor vanish: they go
    out as they are (logged), and their consumers dead-letter them, visibly."""
    caplog.set_level(logging.ERROR, logger="services.runtime.outbox")
    too_long = "x" * 3000  # the old API took reasons up to 2000 characters; this is beyond
    built = contract(
        v1.CertificationAwardWithdrawn,
        award_id="a1",
        candidate_number="C1",
        certification="RNCP40705",
        withdrawn_on=date(2026, 7, 3),
        correction_id="c1",
        reason=too_long,
        exam_center="0750001A",
    )
    assert built.reason == too_long
    assert any("does not fit its contract" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValidationError):
        v1.CertificationAwardWithdrawn.model_validate(built.model_dump(mode="json"))
