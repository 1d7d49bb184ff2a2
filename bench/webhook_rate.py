"""Benchmark: Standard Webhooks delivery rate of ``services.notifications.webhooks.deliver``.

3,000 signed webhooks delivered concurrently (at most 64 in flight, one shared httpx.AsyncClient
with a keep-alive pool) to a local receiver — uvicorn, 1 worker, its own process, answering 200
without verifying anything. Prints deliveries/s for each run and the median.

    python -m bench.webhook_rate --runs 3
    python -m bench.webhook_rate --pool 16                # 64 in flight over 16 connections
    python -m bench.webhook_rate --httpx-default-limits   # httpx's default pool (20 keep-alive)

By default the pool has as many connections as deliveries in flight (64, all kept alive). With
httpcore 1.0.x that is not the fastest setting: every pool pass scans (and polls the socket of)
each pooled connection for every queued request, so a smaller pool can deliver more per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from services.notifications.destinations import Destinations, parse_networks, webhook_client
from services.notifications.webhooks import deliver, new_secret
from tests.support.processes import free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parent.parent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def receiver(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """The receiving end: reads the body, answers 200, verifies nothing."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@contextmanager
def receiver_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.webhook_rate:receiver",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
            "--lifespan",
            "off",
        ],
        cwd=ROOT,
    )
    try:
        wait_for(lambda: port_open(port), timeout=30)
        yield f"http://127.0.0.1:{port}/hooks/bench"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def event_body(i: int) -> bytes:
    """A realistic ~2.5 kB notification: one candidate's deliberation issued ten attestations."""
    issued = [
        {
            "attestation_id": uuid.uuid4().hex[:22],
            "kind": "bloc",
            "code": f"RNCP40705BC{b:02d}",
            "title": "Gérer des relations avec les clients, les usagers et les adhérents",
            "verify_url": f"http://127.0.0.1:8102/v/{uuid.uuid4().hex[:22]}",
            "replaces": None,
        }
        for b in range(1, 11)
    ]
    return json.dumps(
        {
            "id": f"hook:{uuid.uuid4().hex}",
            "type": "fr.certibloc.attestations.attestations-recorded.v1",
            "timestamp": "2026-07-03T10:00:00Z",
            "data": {
                "decision_id": uuid.uuid4().hex,
                "decision": "deliberation",
                "decided_on": "2026-07-03",
                "candidate_number": f"B{i:05d}",
                "certification": "RNCP40705",
                "issued": issued,
                "revoked": [],
            },
        },
        separators=(",", ":"),
    ).encode()


async def one_run(
    url: str, count: int, concurrency: int, pool: int, default_limits: bool
) -> dict[str, Any]:
    secret = new_secret()
    bodies = [(f"msg_{uuid.uuid4().hex}", event_body(i)) for i in range(count)]
    limits = (
        httpx.Limits(max_connections=100, max_keepalive_connections=20)
        if default_limits
        else httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    )
    slots = asyncio.Semaphore(concurrency)
    # The receiver is local: allowed as NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS would.
    destinations = Destinations(parse_networks("127.0.0.0/8"))
    async with webhook_client(30, limits=limits) as client:

        async def one(msg_id: str, body: bytes) -> bool:
            async with slots:
                outcome = await deliver(
                    client, url, secret, msg_id, body, destinations=destinations, timeout=30
                )
                return outcome.ok

        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(one(m, b) for m, b in bodies))
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    failed = results.count(False)
    if failed:
        raise SystemExit(f"{failed} of {count} deliveries failed")
    return {"seconds": wall, "per_second": count / wall, "sender_cpu_share": cpu / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="pooled connections, all kept alive (default: concurrency)",
    )
    parser.add_argument(
        "--httpx-default-limits",
        action="store_true",
        help="use httpx's default pool (100 connections, 20 kept alive) instead of 64/64",
    )
    args = parser.parse_args()
    pool = args.pool or args.concurrency
    limits = "httpx defaults (100, 20 kept alive)" if args.httpx_default_limits else f"{pool}"
    print(f"{args.count} webhooks, {args.concurrency} in flight, pool: {limits}", flush=True)
    rates = []
    with receiver_process() as url:
        for run in range(1, args.runs + 1):
            result = asyncio.run(
                one_run(url, args.count, args.concurrency, pool, args.httpx_default_limits)
            )
            rates.append(result["per_second"])
            print(
                f"run {run}: {args.count} deliveries in {result['seconds']:.2f} s = "
                f"{result['per_second']:.0f}/s (sender CPU {result['sender_cpu_share']:.0%})",
                flush=True,
            )
    print(f"median: {statistics.median(rates):.0f} deliveries/s")


if __name__ == "__main__":
    main()
