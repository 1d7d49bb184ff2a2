"""Prometheus metrics of a service, built per app (nothing at import time) on its own
``CollectorRegistry`` and exposed at ``GET /metrics`` on an internal address only
(``<SERVICE>_METRICS_HOST``/``<SERVICE>_METRICS_PORT``), never on the public port.

Who serves them:
- one process (``<SERVICE>_WORKERS=1``, no ``PROMETHEUS_MULTIPROC_DIR``): a thread of that
  process, started with the service (``ServiceRuntime``), reading its own registry;
- prometheus multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``; ``serve`` sets one under the
  var directory when there are several workers): a thread of the process ``serve`` runs in,
  uvicorn's supervisor, which reads every worker's files. It outlives the workers (a worker
  restarted by uvicorn keeps writing to the same directory), so a scrape never depends on
  which worker is alive, and no two workers race for the port.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
    start_http_server,
)

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # requests no route matched: one series, not one per raw path
# The verification page answers in well under a millisecond: finer buckets at the low end.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiprocess_dir() -> None:
    """Empty the multiprocess directory before the workers start (files of an earlier run
    would be summed with this one's). Called once, by the process that spawns the workers."""
    directory = multiprocess_dir()
    if directory is None:
        return
    # Only prometheus-client's own files: the directory may be a mount point (removing it
    # fails) or hold other files.
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def process_exited() -> None:
    """Drop this worker's live gauges (multiprocess mode) when it stops."""
    directory = multiprocess_dir()
    if directory is not None and directory.exists():
        multiprocess.mark_process_dead(os.getpid(), str(directory))  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class RelayInstruments:
    published: Counter
    batches: Counter
    position: Gauge
    stuck_flag: Gauge
    stuck_position: Gauge

    def delivered(self, messages: int, position: int) -> None:
        self.published.inc(messages)
        self.batches.inc()
        self.position.set(position)

    def stuck(self, position: int) -> None:
        self.stuck_flag.set(1)
        self.stuck_position.set(position)

    def unstuck(self) -> None:
        self.stuck_flag.set(0)
        self.stuck_position.set(0)


@dataclass(frozen=True)
class ConsumerInstruments:
    applied: Counter
    lag: Gauge
    redelivered: Counter
    dead_letters: Counter  # labelled by reason: .labels(reason).inc()
    skipped: Counter  # labelled by reason
    stuck: Gauge
    duplicates: Counter
    consumer: str
    stream: str

    def dead(self, reason: str) -> None:
        self.dead_letters.labels(self.consumer, self.stream, reason).inc()

    def skip(self, reason: str) -> None:
        self.skipped.labels(self.consumer, self.stream, reason).inc()


class Metrics:
    """The metrics of one service. Services add their own on ``registry``."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        if not self.multiprocess:
            ProcessCollector(registry=r)
        self.http_requests = Counter(
            "certibloc_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "certibloc_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.relay_published = Counter(
            "certibloc_relay_events_published",
            "Events the outbox relay got acknowledged by the stream.",
            ["stream"],
            registry=r,
        )
        self.relay_batches = Counter(
            "certibloc_relay_batches",
            "Batches the outbox relay published and recorded.",
            ["stream"],
            registry=r,
        )
        self.relay_position = Gauge(
            "certibloc_relay_position",
            "Log position of the last event the relay got acknowledged and recorded.",
            ["stream"],
            registry=r,
            multiprocess_mode="max",
        )
        self.relay_stuck = Gauge(
            "certibloc_relay_stuck",
            "1 while the outbox relay cannot publish past a position (a message the bus refuses, "
            "or the same position failing for longer than the relay's stuck_after), else 0.",
            ["stream"],
            registry=r,
            multiprocess_mode="max",
        )
        self.relay_stuck_position = Gauge(
            "certibloc_relay_stuck_position",
            "Log position the outbox relay is stuck at (0 when it is not stuck).",
            ["stream"],
            registry=r,
            multiprocess_mode="max",
        )
        self.consumer_applied = Counter(
            "certibloc_consumer_events_applied",
            "Upstream events a consumer took, exactly once: applied by its handler, or passed "
            "over (a type it has no use for). Dead letters are counted apart.",
            ["consumer", "stream"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "certibloc_consumer_lag_messages",
            "Messages on the stream not yet delivered to the consumer (JetStream num_pending "
            "of the last message fetched).",
            ["consumer", "stream"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.consumer_redelivered = Counter(
            "certibloc_consumer_redeliveries",
            "Messages JetStream delivered more than once to a consumer (including those the "
            "consumer handed back on purpose while it waited for an earlier event).",
            ["consumer", "stream"],
            registry=r,
        )
        self.consumer_dead_letters = Counter(
            "certibloc_consumer_dead_letters",
            "Messages a consumer terminated and copied to its dead-letter stream, by reason "
            "(malformed: not a CloudEvent; foreign_source: not from the stream's producer; "
            "invalid: data does not fit its type's contract; rejected: refused by its handler).",
            ["consumer", "stream", "reason"],
            registry=r,
        )
        self.consumer_skipped = Counter(
            "certibloc_consumer_skipped",
            "Messages a consumer passed over without effect, by reason (unknown_type: a type "
            "its producer's catalog does not hold, e.g. a later version).",
            ["consumer", "stream", "reason"],
            registry=r,
        )
        self.consumer_stuck = Gauge(
            "certibloc_consumer_stuck",
            "1 while a consumer has not got past a position for longer than its stuck_after "
            "(an event whose predecessor does not come, a handler that keeps failing), else 0.",
            ["consumer", "stream"],
            registry=r,
            multiprocess_mode="max",
        )
        self.consumer_duplicates = Counter(
            "certibloc_consumer_duplicates",
            "First deliveries of positions a consumer had already passed: copies published "
            "again (a relay reset), or a producer declaring positions it should not.",
            ["consumer", "stream"],
            registry=r,
        )
        self._requests: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def relay(self, stream: str) -> RelayInstruments:
        instruments = RelayInstruments(
            self.relay_published.labels(stream),
            self.relay_batches.labels(stream),
            self.relay_position.labels(stream),
            self.relay_stuck.labels(stream),
            self.relay_stuck_position.labels(stream),
        )
        instruments.unstuck()  # both series from 0
        return instruments

    def consumer(self, consumer: str, stream: str) -> ConsumerInstruments:
        return ConsumerInstruments(
            self.consumer_applied.labels(consumer, stream),
            self.consumer_lag.labels(consumer, stream),
            self.consumer_redelivered.labels(consumer, stream),
            self.consumer_dead_letters,
            self.consumer_skipped,
            self.consumer_stuck.labels(consumer, stream),
            self.consumer_duplicates.labels(consumer, stream),
            consumer,
            stream,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (label children cached: a dict hit per request)."""
        key = (method if method in METHODS else "other", route, status)
        children = self._requests.get(key)
        if children is None:
            children = (
                self.http_requests.labels(key[0], route, str(status)),
                self.http_duration.labels(key[0], route),
            )
            self._requests[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        """The text exposition of this service (all workers' in multiprocess mode)."""
        if self.multiprocess:
            return generate_latest(multiprocess_registry())
        return generate_latest(self.registry)


def multiprocess_registry() -> CollectorRegistry:
    """A registry that reads every worker's files at each collection."""
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    return combined


@dataclass
class MetricsServer:
    """prometheus-client's own exposition server (a daemon thread) on the internal address."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()  # blocks until the serving loop has noticed (<= 0.5 s)
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(host: str, port: int | None, registry: CollectorRegistry) -> MetricsServer | None:
    """Serve ``registry`` at ``http://host:port/metrics``; None when disabled (no port) or
    when the port is taken: metrics are not worth failing the service for, and the operator
    sees the scrape target down and this error in the log."""
    if port is None:
        return None
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as error:
        log.error(
            "metrics endpoint not started", extra={"host": host, "port": port, "error": str(error)}
        )
        return None
    log.info("metrics endpoint", extra={"host": host, "port": port})
    return MetricsServer(server, thread)
