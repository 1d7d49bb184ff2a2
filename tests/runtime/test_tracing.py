"""W3C trace context: parsing, the HTTP middleware, stamping stored events, the relay's NATS
headers and the consumer's child spans (one per message, even within one batch)."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import httpx
import orjson
import pytest
from eventsourcing.application import ProcessingEvent
from fastapi import APIRouter
from nats.aio.client import Client
from nats.js.api import DeliverPolicy

from contracts.envelope import CloudEvent
from contracts.subjects import SUBJECT_PREFIX
from services.runtime import tracing
from services.runtime.consumer import ConsumerSpec, EventConsumer
from services.runtime.http import create_app
from services.runtime.logging import JsonFormatter
from services.runtime.messages import HandlerTable
from services.runtime.nats import ensure_stream
from services.runtime.relay import OutboxRelay
from services.runtime.store import ServiceApplication
from tests.runtime.sample import (
    Counter,
    Downstream,
    SampleTranslator,
    Tally,
    Tick,
    Upstream,
    provision_sample,
    tick_of,
    unique_service,
)
from tests.runtime.test_consumer import envelope

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


# --- parsing and formatting ----------------------------------------------------------------


def test_a_valid_traceparent_round_trips() -> None:
    ctx = tracing.parse(PARENT, "congo=t61rcWkgMzE")
    assert ctx == tracing.TraceContext(TRACE_ID, "00f067aa0ba902b7", "01", "congo=t61rcWkgMzE")
    assert ctx.traceparent == PARENT
    assert len(ctx.traceparent) == 55


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 is 55 chars
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  # not hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    ],
)
def test_an_invalid_traceparent_is_refused(header: str) -> None:
    assert tracing.parse(header) is None


def test_a_later_version_may_append_fields() -> None:
    ctx = tracing.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
    assert ctx is not None and ctx.trace_id == TRACE_ID
    assert ctx.traceparent == PARENT  # re-emitted as the version we speak


def test_an_invalid_tracestate_is_dropped_not_the_traceparent() -> None:
    ctx = tracing.parse(PARENT, "a=" + "x" * 600)
    assert ctx is not None and ctx.tracestate is None
    assert tracing.parse(PARENT, "bad\x01state") == tracing.parse(PARENT)


def test_a_child_keeps_the_trace_and_gets_a_new_span() -> None:
    parent = tracing.parse(PARENT, "k=v")
    assert parent is not None
    children = {parent.child() for _ in range(50)}
    assert {c.trace_id for c in children} == {TRACE_ID}
    assert {c.flags for c in children} == {"01"} and {c.tracestate for c in children} == {"k=v"}
    spans = {c.span_id for c in children}
    assert len(spans) == 50 and parent.span_id not in spans
    assert all(tracing.parse(c.traceparent, c.tracestate) == c for c in children)


def test_a_new_trace_is_valid_and_not_sampled() -> None:
    ctx = tracing.new_trace()
    parsed = tracing.parse(ctx.traceparent)
    assert parsed == ctx and ctx.flags == "00"
    assert len(ctx.trace_id) == 32 and len(ctx.span_id) == 16


def test_continued_sets_and_restores_the_current_context() -> None:
    assert tracing.current() is None
    with tracing.continued(PARENT) as ctx:
        assert tracing.current() is ctx
        assert ctx.trace_id == TRACE_ID and ctx.span_id != "00f067aa0ba902b7"
        with tracing.continued(None) as root:
            assert root.trace_id != TRACE_ID  # nothing to continue: a new trace
        assert tracing.current() is ctx
    assert tracing.current() is None


def test_log_lines_carry_the_trace_id() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", (), None)
    formatter = JsonFormatter("svc")
    assert "trace_id" not in orjson.loads(formatter.format(record))
    with tracing.continued(PARENT) as ctx:
        line = orjson.loads(formatter.format(record))
    assert line["trace_id"] == TRACE_ID and line["span_id"] == ctx.span_id


# --- HTTP ------------------------------------------------------------------------------------


def _app_seeing_the_trace() -> Any:
    app = create_app(title="t", version="1", description="", lifespan=None, max_body_bytes=1 << 20)
    router = APIRouter()

    @router.get("/trace")
    async def seen() -> dict[str, str | None]:
        ctx = tracing.current()
        assert ctx is not None
        return {"traceparent": ctx.traceparent, "tracestate": ctx.tracestate}

    @router.get("/trace-sync")
    def seen_in_a_thread() -> dict[str, str | None]:
        return {"traceparent": tracing.current_traceparent(), "tracestate": None}

    app.include_router(router)
    return app


async def test_a_request_continues_the_callers_trace_or_starts_one() -> None:
    transport = httpx.ASGITransport(app=_app_seeing_the_trace())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for path in ("/trace", "/trace-sync"):
            seen = (await http.get(path, headers={"traceparent": PARENT})).json()
            ctx = tracing.parse(seen["traceparent"])
            assert ctx is not None and ctx.trace_id == TRACE_ID and ctx.flags == "01"
            assert ctx.span_id != "00f067aa0ba902b7"  # the server's own span
        seen = (
            await http.get("/trace", headers={"traceparent": PARENT, "tracestate": "a=1"})
        ).json()
        assert seen["tracestate"] == "a=1"
        fresh = [
            tracing.parse((await http.get("/trace", headers=h)).json()["traceparent"])
            for h in ({}, {"traceparent": "garbage"}, {})
        ]
        assert all(f is not None and f.trace_id != TRACE_ID for f in fresh)
        assert len({f.trace_id for f in fresh if f is not None}) == 3
        # Two traceparent headers are invalid: a new trace, not either of them.
        twice = await http.get("/trace", headers=[("traceparent", PARENT), ("traceparent", PARENT)])
        both = tracing.parse(twice.json()["traceparent"])
        assert both is not None and both.trace_id != TRACE_ID


# --- stored events and the relay -------------------------------------------------------------


def _stored_stamps(app: ServiceApplication) -> list[tuple[str, str | None]]:
    """(topic suffix, traceparent) of every stored event, in log order."""
    out = []
    for n in app.process_recorder.select_notifications(start=0, limit=1000):
        traceparent, _ = tracing.stamped(app.mapper.to_domain_event(n))
        out.append((n.topic.rsplit(".", 1)[-1], traceparent))
    return out


def test_events_saved_in_a_context_are_stamped_and_still_replay(
    sqlite_env: dict[str, str],
) -> None:
    app = Upstream(env=sqlite_env)
    with tracing.continued(PARENT, "k=v") as ctx:
        counter = Counter(name="c")
        counter.increment(by=2)
        app.save(counter)
    loose = Counter(name="outside")  # saved with no current context: no stamp
    app.save(loose)
    assert _stored_stamps(app) == [
        ("Created", ctx.traceparent),
        ("Incremented", ctx.traceparent),
        ("Created", None),
    ]
    first = app.mapper.to_domain_event(app.process_recorder.select_notifications(0, 1)[0])
    assert tracing.stamped(first) == (ctx.traceparent, "k=v")
    replayed: Any = app.repository.get(counter.id)  # the stamp does not disturb the aggregate
    assert replayed.total == 2 and replayed.name == "c"
    app.close()


def test_an_aggregate_saved_later_keeps_the_trace_it_remembers(
    sqlite_env: dict[str, str],
) -> None:
    app = Upstream(env=sqlite_env)
    later = Counter(name="later")  # as a notification remembers the trace that queued it
    later.traceparent = PARENT  # type: ignore[attr-defined]
    later.increment(by=1)
    app.save(later)
    stamps = [tp for _, tp in _stored_stamps(app)]
    parsed = [tracing.parse(tp) for tp in stamps]
    assert all(p is not None and p.trace_id == TRACE_ID for p in parsed)
    assert all(p is not None and p.span_id != "00f067aa0ba902b7" for p in parsed)
    app.close()


async def test_the_relay_puts_the_stamp_on_the_envelope_and_in_the_nats_headers(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    service = unique_service()
    app = Upstream(env=sqlite_env)
    with tracing.continued(PARENT, "k=v") as ctx:
        counter = Counter(name="traced")
        counter.increment(by=2)
        app.save(counter)
    plain = Counter(name="plain")
    plain.increment(by=1)
    app.save(plain)
    js = nc.jetstream()
    await ensure_stream(js, f"S_{service}", service, replicas=1)
    relay = OutboxRelay(
        app, SampleTranslator(service), js, source=f"/certibloc/{service}", stream=f"S_{service}"
    )
    while await relay.relay_once():
        pass
    sub = await js.subscribe(
        f"{SUBJECT_PREFIX}.{service}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    msgs = [await sub.next_msg(timeout=5) for _ in range(3)]
    await sub.unsubscribe()
    traced, untraced = msgs[:2], msgs[2]
    for msg in traced:
        assert msg.headers is not None
        assert msg.headers["traceparent"] == ctx.traceparent
        assert msg.headers["tracestate"] == "k=v"
        body = orjson.loads(msg.data)
        assert body["traceparent"] == ctx.traceparent and body["tracestate"] == "k=v"
        CloudEvent.model_validate(body)
    assert untraced.headers is not None
    assert "traceparent" not in untraced.headers and "Nats-Msg-Id" in untraced.headers
    assert "traceparent" not in orjson.loads(untraced.data)
    app.close()


# --- the consumer ----------------------------------------------------------------------------


def _one_tally_per_event(app: Downstream, service: str) -> ConsumerSpec:
    """Each event opens its own aggregate (staged), and the shared tally counts it (collected):
    both ways a handler produces events."""
    model = tick_of(service)

    def handler(_: Tick, ce: CloudEvent, unit: ProcessingEvent[UUID]) -> None:
        app.stage(unit, Tally(key=ce.id))
        tally = app.get_in(unit, Tally.create_id("all"), Tally) or Tally(key="all")
        tally.count(event_id=ce.id)
        unit.collect_events(tally)

    table = HandlerTable(service, catalog={model.event_type(): model}).on(model, handler)
    return ConsumerSpec(f"D_{service}", table)


async def test_each_message_of_a_batch_is_handled_in_a_child_span_of_its_own_trace(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    service = unique_service()
    js = nc.jetstream()
    await provision_sample(js, service)
    traces = [tracing.new_trace() for _ in range(3)]
    for k, ctx in enumerate(traces):
        await js.publish(
            f"certibloc.{service}.p0.tick.v1",
            envelope(service, (k + 1) * 1000, k * 1000),
            headers={"traceparent": ctx.traceparent},
        )
    # One more with the context only in the envelope, one with none at all.
    in_envelope = tracing.new_trace()
    body = orjson.loads(envelope(service, 4000, 3000))
    await js.publish(
        f"certibloc.{service}.p0.tick.v1",
        orjson.dumps({**body, "traceparent": in_envelope.traceparent}),
    )
    await js.publish(f"certibloc.{service}.p0.tick.v1", envelope(service, 5000, 4000))
    app = Downstream(env=sqlite_env)
    consumer = EventConsumer(
        app,
        _one_tally_per_event(app, service),
        js,
        service=f"down{service}",
        stream=f"S_{service}",
        upstream=service,
        fetch_timeout=1,
    )
    await consumer.start()
    applied = 0
    while applied < 5:
        applied += await consumer.consume_once()
    assert applied == 5  # in one batch or a few: each event still gets its own span

    by_event: dict[str, set[str]] = {}
    for n in app.process_recorder.select_notifications(start=0, limit=100):
        domain_event: Any = app.mapper.to_domain_event(n)
        traceparent, _ = tracing.stamped(domain_event)
        key = getattr(domain_event, "key", None) or getattr(domain_event, "event_id", None)
        if key and key != "all":
            assert traceparent is not None, f"{key} was not stamped"
            by_event.setdefault(key, set()).add(traceparent)
    expected = {f"e{(k + 1) * 1000}": ctx for k, ctx in enumerate(traces)}
    expected["e4000"] = in_envelope
    for event_id, parent in expected.items():
        stamps = [tracing.parse(tp) for tp in by_event[event_id]]
        assert len(stamps) == 1, "the opened tally and the count share the handling span"
        assert stamps[0] is not None and stamps[0].trace_id == parent.trace_id
        assert stamps[0].span_id != parent.span_id
    fresh = tracing.parse(next(iter(by_event["e5000"])))
    assert fresh is not None
    assert fresh.trace_id not in {c.trace_id for c in [*traces, in_envelope]}
    app.close()
