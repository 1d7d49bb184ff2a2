"""Prometheus metrics of the shared runtime: per app, by route template, relay and consumer
counters that move with the work, several workers answered for together, all on an internal
endpoint only (the public port answers 404)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from nats.aio.client import Client
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from services.runtime import metrics as runtime_metrics
from services.runtime.consumer import EventConsumer
from services.runtime.http import create_app
from services.runtime.metrics import Metrics, serve_metrics
from services.runtime.relay import OutboxRelay
from services.runtime.settings import METRICS_PORT_OFFSET, ServiceSettings
from tests.runtime.sample import Counter, Downstream, SampleTranslator, Upstream, spec
from tests.runtime.test_consumer import publish, setup
from tests.support.processes import free_port, port_open


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a text exposition, or None if it is absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def _app(metrics: Metrics | None = None) -> object:
    app = create_app(
        title="t",
        version="1",
        description="",
        lifespan=None,
        max_body_bytes=1 << 20,
        metrics=metrics,
    )
    router = APIRouter()

    @router.get("/v/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    app.include_router(router)
    return app


def metrics_url(public_url: str) -> str:
    """The internal metrics endpoint of a service serving at ``public_url`` with the default
    metrics port (its public port + METRICS_PORT_OFFSET)."""
    host, port = public_url.removeprefix("http://").rsplit(":", 1)
    return f"http://{host}:{int(port) + METRICS_PORT_OFFSET}/metrics"


async def test_metrics_count_requests_by_route_template() -> None:
    metrics = Metrics()
    transport = httpx.ASGITransport(app=_app(metrics))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for i in range(3):
            assert (await http.get(f"/v/id-{i}")).status_code == 200
        assert (await http.get("/nowhere/at/all")).status_code == 404
        assert (await http.post("/v/x")).status_code == 405
        # Not on the public app: an unmatched route like any other.
        public = await http.get("/metrics")
        assert public.status_code == 404
        assert public.headers["content-type"] == "application/problem+json"
    text = metrics.exposition().decode()
    route = {"method": "GET", "route": "/v/{item_id}"}
    assert sample(text, "certibloc_http_requests_total", status="200", **route) == 3
    assert sample(text, "certibloc_http_request_duration_seconds_count", **route) == 3
    assert sample(text, "certibloc_http_requests_total", route="unmatched", status="404") == 2
    assert sample(text, "certibloc_http_requests_total", method="POST", route="/v/{item_id}") == 1
    assert "id-0" not in text and "/nowhere" not in text  # never the raw path
    # Nothing ran yet: the relay and consumer families are declared, with no series.
    assert "# TYPE certibloc_relay_events_published_total counter" in text
    assert "process_resident_memory_bytes" in text


def test_the_internal_endpoint_serves_the_registry_over_http() -> None:
    metrics = Metrics()
    metrics.observe_request("GET", "/v/{attestation_id}", 200, 0.001)
    port = free_port()
    server = serve_metrics("127.0.0.1", port, metrics.registry)
    assert server is not None and server.port == port
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert sample(response.text, "certibloc_http_requests_total", status="200") == 1
        # The port is taken: no second endpoint, no crash (the error is logged).
        assert serve_metrics("127.0.0.1", port, metrics.registry) is None
    finally:
        server.stop()
    assert not port_open(port)
    assert serve_metrics("127.0.0.1", None, metrics.registry) is None  # disabled


def test_the_metrics_port_defaults_to_the_public_one_plus_the_offset() -> None:
    assert ServiceSettings(port=8102).metrics_bind_port == 8102 + METRICS_PORT_OFFSET
    assert ServiceSettings(port=8102, metrics_port=9999).metrics_bind_port == 9999
    assert ServiceSettings(port=8102, metrics_port=0).metrics_bind_port is None
    assert ServiceSettings().metrics_host == "127.0.0.1"


async def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # would raise "Duplicated timeseries" if shared
    transport = httpx.ASGITransport(app=_app(first))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await http.get("/v/a")
    assert sample(first.exposition().decode(), "certibloc_http_requests_total", status="200")
    assert sample(second.exposition().decode(), "certibloc_http_requests_total") is None


async def test_relay_metrics_follow_what_was_published(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    app = Upstream(env=sqlite_env)
    counter = Counter(name="c")
    for _ in range(4):
        counter.increment(by=2)
    app.save(counter)
    metrics = Metrics()
    relay = OutboxRelay(
        app,
        SampleTranslator(service),
        js,
        source=f"/certibloc/{service}",
        stream=f"S_{service}",
        batch_size=3,
        metrics=metrics,
    )
    while await relay.relay_once():
        pass
    text = metrics.exposition().decode()
    stream = {"stream": f"S_{service}"}
    info = await js.stream_info(f"S_{service}")
    assert info.state.messages == 8
    assert sample(text, "certibloc_relay_events_published_total", **stream) == 8
    assert sample(text, "certibloc_relay_batches_total", **stream) == 2  # 5 notifications / 3
    assert sample(text, "certibloc_relay_position", **stream) == await relay.position()
    app.close()


async def test_consumer_metrics_count_applied_lag_and_redeliveries(
    nc: Client, sqlite_env: dict[str, str]
) -> None:
    js, service = await setup(nc)
    await publish(js, service, [(1000, 0), (2000, 1000)])
    app = Downstream(env=sqlite_env)
    metrics = Metrics()
    consumer = EventConsumer(
        app,
        spec(app, service),
        js,
        service=f"down{service}",
        stream=f"S_{service}",
        upstream=service,
        batch_size=1,
        fetch_timeout=1,
        metrics=metrics,
    )
    await consumer.start()
    labels = {"consumer": f"D_{service}", "stream": f"S_{service}"}

    def value(name: str) -> float | None:
        return sample(metrics.exposition().decode(), name, **labels)

    assert await consumer.consume_once() == 1
    assert value("certibloc_consumer_lag_messages") == 1
    assert value("certibloc_consumer_events_applied_total") == 1
    # A message handed back is delivered again: a redelivery, acknowledged without effect.
    msgs = await consumer._sub.fetch(1, timeout=1)
    await msgs[0].nak()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while value("certibloc_consumer_events_applied_total") != 2:
        assert loop.time() < deadline, "the consumer did not catch up"
        await consumer.consume_once()
    assert value("certibloc_consumer_lag_messages") == 0
    assert value("certibloc_consumer_events_applied_total") == 2
    assert value("certibloc_consumer_redeliveries_total") == 1
    app.close()


@pytest.fixture
def multiprocess_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "prom"
    monkeypatch.setenv(runtime_metrics.MULTIPROC_ENV, str(directory))
    runtime_metrics.prepare_multiprocess_dir()
    original = values.ValueClass
    yield directory
    values.ValueClass = original


def test_with_several_workers_each_answers_for_all(multiprocess_dir: Path) -> None:
    """Two workers (processes 101 and 102, simulated) count requests and relay separately;
    either one's /metrics shows the sums, and the most recent lag."""
    stale = multiprocess_dir / "counter_99.db"
    stale.write_bytes(b"left by an earlier run")
    runtime_metrics.prepare_multiprocess_dir()
    assert not stale.exists(), "an earlier run's files must not be summed with this one's"
    workers = []
    for pid, requests, published, lag in ((101, 3, 10, 7), (102, 2, 5, 0)):
        values.ValueClass = values.MultiProcessValue(lambda pid=pid: pid)  # type: ignore[no-untyped-call]
        m = Metrics()
        assert m.multiprocess
        for _ in range(requests):
            m.observe_request("GET", "/v/{attestation_id}", 200, 0.001)
        m.relay("S").delivered(published, position=1000 * published)
        m.consumer("c", "S").lag.set(lag)
        workers.append(m)
    for m in workers:
        text = m.exposition().decode()
        assert sample(text, "certibloc_http_requests_total", status="200") == 5
        assert sample(text, "certibloc_http_request_duration_seconds_count") == 5
        assert sample(text, "certibloc_relay_events_published_total", stream="S") == 15
        assert sample(text, "certibloc_relay_position", stream="S") == 10_000  # the max
        assert sample(text, "certibloc_consumer_lag_messages", consumer="c") == 0  # latest
    # A worker that stops takes its live gauges (the lag) with it.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    Metrics().consumer("c", "S").lag.set(3)
    mine = multiprocess_dir / f"gauge_livemostrecent_{os.getpid()}.db"
    assert mine.exists()
    runtime_metrics.process_exited()
    assert not mine.exists()
    assert (multiprocess_dir / "gauge_livemostrecent_101.db").exists()
