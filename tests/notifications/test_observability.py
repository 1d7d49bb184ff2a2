"""Observability end to end: one PV posted with a ``traceparent`` is followed (same trace id,
new span ids) through the NATS headers of the registry's, the attestations' and the
notifications' events; each service's /metrics moves with the work."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from contracts.subjects import STREAMS
from services.runtime import tracing
from tests.attestations.harness import Attestations
from tests.notifications.harness import Notifications
from tests.registry.harness import Registry, candidate, full_lines, pv
from tests.runtime.test_metrics import metrics_url, sample
from tests.support.processes import wait_for

REGISTERED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
POSTED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def messages(nc: Client, service: str, timeout: float = 30) -> list[Msg]:
    """Every message on a service's stream, once it holds them all (read with an ordered
    consumer, so the NATS headers come as published)."""
    js = nc.jetstream()
    stream = STREAMS[service]
    sub = await js.subscribe(
        f"certibloc.{service}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    out: list[Msg] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            total = (await js.stream_info(stream)).state.messages
            if total and len(out) >= total:
                return out
            assert loop.time() < deadline, f"{stream}: read {len(out)} of {total}"
            try:
                out.append(await sub.next_msg(timeout=0.2))
            except TimeoutError:
                continue
    finally:
        await sub.unsubscribe()


def trace_of(msg: Msg) -> tracing.TraceContext | None:
    headers = msg.headers or {}
    return tracing.parse(headers.get("traceparent"), headers.get("tracestate"))


def event_type(msg: Msg) -> str:
    return msg.subject.split(".")[3]  # certibloc.<service>.p<partition>.<event>.v<n>


def scrape(url: str) -> str:
    response = httpx.get(metrics_url(url), timeout=10)  # the internal endpoint
    assert response.status_code == 200
    return response.text


async def test_one_trace_from_the_pv_to_the_mails_and_metrics_that_move(
    everything: tuple[Registry, Attestations, Notifications], nc: Client
) -> None:
    registry, attestations, notes = everything
    for service in everything:  # before any work: answering, and at zero
        text = scrape(service.url)
        assert "# TYPE certibloc_http_requests_total counter" in text
        assert "# TYPE certibloc_relay_events_published_total counter" in text
    text = scrape(attestations.url)
    assert sample(text, "certibloc_attestations_issued_total") == 0
    text = scrape(notes.url)
    assert sample(text, "certibloc_notifications_deliveries_total", outcome="sent") == 0

    auth = registry.auth()
    async with httpx.AsyncClient(base_url=registry.url, timeout=30) as http:
        created = await http.post(
            "/v1/candidates",
            json=candidate("OB1"),
            headers={**auth, "traceparent": REGISTERED},
        )
        assert created.status_code == 201, created.text
        lines = [
            x for x in full_lines("OB1", "14") if x["bloc"] in ("RNCP40705BC01", "RNCP40705BC03")
        ]
        posted = await http.post(
            "/v1/deliberations",
            json=pv(lines),
            headers={**auth, "traceparent": POSTED, "tracestate": "certibloc=test"},
        )
        assert posted.status_code == 201, posted.text
    wait_for(lambda: len(notes.mails()) >= 1, timeout=60)

    registered = tracing.parse(REGISTERED)
    pv_trace = tracing.parse(POSTED)
    assert registered is not None and pv_trace is not None

    # The registry: what each request caused carries that request's trace.
    registry_msgs = await messages(nc, "registry")
    by_type: dict[str, list[tracing.TraceContext | None]] = {}
    for msg in registry_msgs:
        by_type.setdefault(event_type(msg), []).append(trace_of(msg))
    assert by_type["exam-center-key-issued"] == [None, None]  # stored outside any request
    (registration,) = by_type["candidate-registered"]
    assert registration is not None and registration.trace_id == registered.trace_id
    from_pv = by_type["decision-recorded"]
    assert len(from_pv) == 1  # one candidate in the PV: one decision
    assert {t.trace_id if t else None for t in from_pv} == {pv_trace.trace_id}
    assert {t.tracestate if t else None for t in from_pv} == {"certibloc=test"}
    request_span = {t.span_id for t in from_pv if t}
    assert len(request_span) == 1 and pv_trace.span_id not in request_span  # the server's span

    # The two attestations issued for it, in one message: same trace, the consumer's span.
    issued = [
        m for m in await messages(nc, "attestations") if event_type(m) == "attestations-recorded"
    ]
    assert len(issued) == 1
    spans = [trace_of(m) for m in issued]
    assert {t.trace_id if t else None for t in spans} == {pv_trace.trace_id}
    assert not {t.span_id for t in spans if t} & (request_span | {pv_trace.span_id})

    # The e-mail listing them, recorded later by the dispatcher: still the same trace.
    sent = [m for m in await messages(nc, "notifications") if event_type(m) == "notification-sent"]
    assert len(sent) == 1
    assert {t.trace_id if (t := trace_of(m)) else None for m in sent} == {pv_trace.trace_id}

    # Metrics, once every relay and consumer caught up.
    js = nc.jetstream()
    on_registry = (await js.stream_info(STREAMS["registry"])).state.messages
    assert on_registry == len(registry_msgs) == 2 + 1 + 1

    def registry_caught_up() -> str | None:
        text = scrape(registry.url)
        published = sample(text, "certibloc_relay_events_published_total")
        return text if published == on_registry else None

    text = wait_for(registry_caught_up)
    post = {"method": "POST", "status": "201"}
    assert sample(text, "certibloc_http_requests_total", route="/v1/deliberations", **post) == 1
    assert sample(text, "certibloc_http_requests_total", route="/v1/candidates", **post) == 1
    assert sample(text, "certibloc_relay_position") == sample(
        text, "certibloc_relay_position", stream=STREAMS["registry"]
    )
    assert (sample(text, "certibloc_relay_position") or 0) > 0

    def attestations_caught_up() -> str | None:
        text = scrape(attestations.url)
        consumer = {"consumer": "attestations", "stream": STREAMS["registry"]}
        applied = sample(text, "certibloc_consumer_events_applied_total", **consumer)
        lag = sample(text, "certibloc_consumer_lag_messages", **consumer)
        published = sample(text, "certibloc_relay_events_published_total")
        return text if (applied, lag, published) == (on_registry, 0, 1) else None

    text = wait_for(attestations_caught_up)
    assert sample(text, "certibloc_attestations_issued_total") == 2
    assert sample(text, "certibloc_attestations_revoked_total") == 0

    def notifications_caught_up() -> str | None:
        text = scrape(notes.url)
        counts: list[Any] = [
            sample(text, name, consumer=consumer)
            for consumer in ("notifications-registry", "notifications")
            for name in (
                "certibloc_consumer_events_applied_total",
                "certibloc_consumer_lag_messages",
            )
        ]
        counts.append(sample(text, "certibloc_relay_events_published_total"))
        return text if counts == [on_registry, 0, 1, 0, 1] else None

    text = wait_for(notifications_caught_up)
    deliveries = "certibloc_notifications_deliveries_total"
    assert sample(text, deliveries, channel="email", outcome="sent") == 1
    assert sample(text, deliveries, channel="email", outcome="failed") == 0
    assert sample(text, deliveries, channel="webhook", outcome="sent") == 0
