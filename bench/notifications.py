"""Benchmark of the notifications service: e-mails per second to a local SMTP sink for 10,000
attestation events, and webhook deliveries per second.

    python -m bench.notifications --runs 3

Each run starts from nothing: a fresh nats-server, the registry's and attestations' streams
filled with 1,000 candidate-registered and 10,000 attestation-issued events (published
directly, as those services would), a local SMTP sink, and a local webhook receiver (uvicorn,
answering 200). The notifications service then starts; the clock runs from its first e-mail
until the 10,000th is stored by the sink, and from its first webhook until the 10,000th.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts import api_keys
from contracts.subjects import STREAMS
from services.notifications.sink import start_sink
from services.runtime.nats import ensure_stream
from tests.support.processes import NatsServer, ServedApp, ServiceProcess, free_port

RESULTS = Path(__file__).parent / "results"
CENTER = "0750001A"


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float = 0.0

    async def endpoint(self, request: Request) -> Response:
        await request.body()
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.count += 1
        return Response(status_code=200)


def envelope(service: str, kind: str, position: int, previous: int, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(position),
            "source": f"/certibloc/{service}",
            "type": f"fr.certibloc.{service}.{kind}.v1",
            "time": datetime.now(UTC).isoformat(),
            "position": position,
            "previous": previous,
            "data": data,
        }
    ).encode()


async def publish_registry(js: Any, candidates: int, key: str) -> None:
    await ensure_stream(js, STREAMS["registry"], "registry", 1)
    digest = api_keys.digest(key)
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "exam-center-key-issued",
            {
                "exam_center": CENTER,
                "key_id": digest[:12],
                "digest": digest,
                "issued_at": "2026-01-01T00:00:00Z",
            },
        )
    ]
    for i in range(candidates):
        events.append(
            (
                "candidate-registered",
                {
                    "candidate_number": f"B{i:05d}",
                    "certification": "RNCP40705",
                    "exam_center": CENTER,
                    "birth_name": "Durand",
                    "usage_name": None,
                    "given_names": ["Léa"],
                    "email": f"b{i:05d}@example.org",
                    "access_route": "formation_continue",
                    "candidate_group": 1,
                    "ine": None,
                    "registered_at": "2026-01-01T00:00:00Z",
                },
            )
        )
    futures = [
        await js.publish_async(
            f"certibloc.registry.{kind}.v1",
            envelope("registry", kind, n * 1000, (n - 1) * 1000, data),
        )
        for n, (kind, data) in enumerate(events, start=1)
    ]
    await asyncio.gather(*futures)


async def publish_attestations(js: Any, candidates: int, attestations: int) -> None:
    await ensure_stream(js, STREAMS["attestations"], "attestations", 1)
    futures = []
    for n in range(1, attestations + 1):
        public_id = f"{n:022d}"
        data = {
            "attestation_id": public_id,
            "kind": "bloc",
            "code": "RNCP40705BC01",
            "title": "Gérer des relations avec les clients, les usagers et les adhérents",
            "certification": "RNCP40705",
            "candidate_number": f"B{n % candidates:05d}",
            "exam_center": CENTER,
            "holder_given_names": ["Léa"],
            "holder_family_name": "Durand",
            "issued_at": "2026-07-03T10:00:00Z",
            "verify_url": f"http://127.0.0.1:8102/v/{public_id}",
            "source_id": str(n),
        }
        futures.append(
            await js.publish_async(
                "certibloc.attestations.attestation-issued.v1",
                envelope("attestations", "attestation-issued", n * 1000, (n - 1) * 1000, data),
            )
        )
    await asyncio.gather(*futures)


async def one_run(
    work: Path, candidates: int, attestations: int, webhooks: bool
) -> dict[str, float]:
    nats_server = NatsServer(store=work / "nats")
    nats_server.start()
    controller, smtp_port = start_sink(work / "mail")
    counter = Counter()
    receiver = ServedApp(Starlette(routes=[Route("/hook", counter.endpoint, methods=["POST"])]))
    receiver.__enter__()
    nc = await nats_server.connect()
    js = nc.jetstream()
    try:
        key = api_keys.new_key(CENTER)
        await publish_registry(js, candidates, key)
        port = free_port()
        env = {
            "CERTIBLOC_VAR_DIR": str(work / "var"),
            **nats_server.env,
            "CERTIBLOC_LOG_LEVEL": "WARNING",
            "NOTIFICATIONS_PORT": str(port),
            "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
        }
        service = ServiceProcess("services.notifications", port, env, work / "notifications.log")
        service.start()
        try:
            if webhooks:
                # The center's key is known once the registry's events are consumed.
                async with httpx.AsyncClient() as http:
                    while True:
                        r = await http.post(
                            f"{service.url}/v1/webhooks",
                            json={"url": f"{receiver.url}/hook"},
                            headers={"Authorization": f"Bearer {key}"},
                        )
                        if r.status_code == 201:
                            break
                        await asyncio.sleep(0.02)
            await publish_attestations(js, candidates, attestations)
            sink = controller.handler
            while sink.received == 0:
                await asyncio.sleep(0.002)
            first_mail = time.perf_counter()
            while sink.received < attestations:
                await asyncio.sleep(0.01)
            mails_done = time.perf_counter()
            result = {
                "emails": float(attestations),
                "emails_per_second": attestations / (mails_done - first_mail),
                "peak_rss_mib": service.peak_rss_bytes() / 2**20,
            }
            if webhooks:
                while counter.count < attestations:
                    await asyncio.sleep(0.01)
                assert counter.first is not None
                result["webhooks_per_second"] = attestations / (counter.last - counter.first)
            return result
        finally:
            service.stop()
    finally:
        await nc.close()
        receiver.__exit__(None, None, None)
        controller.stop()
        nats_server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--attestations", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=1_000)
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    for n in range(args.runs):
        for webhooks in (False, True):
            with tempfile.TemporaryDirectory(prefix="certibloc-bench-") as tmp:
                result = asyncio.run(
                    one_run(Path(tmp), args.candidates, args.attestations, webhooks)
                )
            result["with_webhooks"] = float(webhooks)
            runs.append(result)
            print(f"run {n + 1}{' (with webhooks)' if webhooks else ''}: {json.dumps(result)}")
    mail_only = [r for r in runs if not r["with_webhooks"]]
    both = [r for r in runs if r["with_webhooks"]]
    summary = {
        "runs": runs,
        "median_emails_per_second": statistics.median(r["emails_per_second"] for r in mail_only),
        "median_emails_per_second_with_webhooks": statistics.median(
            r["emails_per_second"] for r in both
        ),
        "median_webhooks_per_second": statistics.median(r["webhooks_per_second"] for r in both),
    }
    print(
        f"e-mails: median {summary['median_emails_per_second']:.0f}/s alone; with webhooks "
        f"{summary['median_emails_per_second_with_webhooks']:.0f} e-mails/s and "
        f"{summary['median_webhooks_per_second']:.0f} webhooks/s"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "notifications.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
