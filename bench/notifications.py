"""Benchmark of the notifications service: e-mails and webhooks per second for one 10,000-bloc
deliberation (1,000 candidates x 10 blocs).

    python -m bench.notifications --runs 3

Each run starts from nothing: a fresh nats-server, the registry's and attestations' streams
filled with 1,000 candidate-registered and 1,000 attestations-recorded events of 10 issued
attestations each (encoded and chained as those services' relays do), a local SMTP sink, and a
local webhook receiver (uvicorn, answering 200). The notifications service then starts; the
clock runs from its first e-mail until the 1,000th (one per candidate and decision) is stored
by the sink, and from its first webhook until the 1,000th. Rates are quoted per e-mail and per
attestation listed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts import api_keys, attestations_v1, registry_v1
from contracts.events import ContractEvent
from contracts.subjects import STREAMS
from services.notifications.sink import start_sink
from services.runtime.nats import ensure_stream
from services.runtime.outbox import Outgoing, encode
from tests.support.processes import NatsServer, ServedApp, ServiceProcess, free_port

RESULTS = Path(__file__).parent / "results"
CENTER = "0750001A"
BLOC_TITLE = "Gérer des relations avec les clients, les usagers et les adhérents"
CERTIFICATION_TITLE = "BAC PRO - Assistance à la gestion des organisations et de leurs activités"


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


class Chain:
    """Encodes a producer's events as its relay does: one partition, each message chained to
    the one before it."""

    def __init__(self, producer: str) -> None:
        self.producer = producer
        self.notification_id = 0
        self.last = 0

    def encode(self, event: ContractEvent) -> tuple[str, bytes]:
        self.notification_id += 1
        message = encode(
            Outgoing(event, event.event_type()),
            stream=STREAMS[self.producer],
            source=f"/certibloc/{self.producer}",
            notification_id=self.notification_id,
            index=0,
            previous=self.last,
            timestamp=datetime.now(UTC),
            traceparent=None,
            tracestate=None,
        )
        self.last = message.position
        return message.subject, message.payload


async def publish(js: Any, chain: Chain, events: list[ContractEvent]) -> None:
    await ensure_stream(js, STREAMS[chain.producer], chain.producer, 1)
    futures = [await js.publish_async(*chain.encode(e)) for e in events]
    await asyncio.gather(*futures)


def registry_events(candidates: int, key: str) -> list[ContractEvent]:
    digest = api_keys.digest(key)
    now = datetime.now(UTC)
    events: list[ContractEvent] = [
        registry_v1.ExamCenterKeyIssued(
            exam_center=CENTER, key_id=digest[:12], digest=digest, issued_at=now
        )
    ]
    events += [
        registry_v1.CandidateRegistered(
            candidate_number=f"B{i:05d}",
            certification="RNCP40705",
            exam_center=CENTER,
            birth_name="Durand",
            given_names=["Léa"],
            email=f"b{i:05d}@example.org",
            access_route="formation_continue",
            candidate_group=1,
            registered_at=now,
        )
        for i in range(candidates)
    ]
    return events


def attestations_events(candidates: int, blocs: int) -> list[ContractEvent]:
    now = datetime.now(UTC)
    out: list[ContractEvent] = []
    for i in range(candidates):
        issued = []
        for b in range(1, blocs + 1):
            public_id = f"{i:019d}b{b:02d}"
            issued.append(
                attestations_v1.IssuedAttestation(
                    attestation_id=public_id,
                    kind="bloc",
                    code=f"RNCP40705BC{b:02d}",
                    title=BLOC_TITLE,
                    verify_url=f"http://127.0.0.1:8102/v/{public_id}",
                    source_id=f"v-{i}-{b}",
                )
            )
        out.append(
            attestations_v1.AttestationsRecorded(
                decision_id="d1",
                decision="deliberation",
                decided_on=date(2026, 7, 3),
                candidate_number=f"B{i:05d}",
                exam_center=CENTER,
                certification="RNCP40705",
                certification_title=CERTIFICATION_TITLE,
                holder_given_names=["Léa"],
                holder_family_name="Durand",
                issued=issued,
                recorded_at=now,
            )
        )
    return out


async def one_run(work: Path, candidates: int, blocs: int, webhooks: bool) -> dict[str, float]:
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
        await publish(js, Chain("registry"), registry_events(candidates, key))
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
            await publish(js, Chain("attestations"), attestations_events(candidates, blocs))
            sink = controller.handler
            while sink.received == 0:
                await asyncio.sleep(0.002)
            first_mail = time.perf_counter()
            while sink.received < candidates:
                await asyncio.sleep(0.01)
            mails_done = time.perf_counter()
            result = {
                "emails": float(candidates),
                "emails_per_second": candidates / (mails_done - first_mail),
                "attestations_mailed_per_second": candidates * blocs / (mails_done - first_mail),
                "peak_rss_mib": service.peak_rss_bytes() / 2**20,
            }
            if webhooks:
                while counter.count < candidates:
                    await asyncio.sleep(0.01)
                assert counter.first is not None
                result["webhooks_per_second"] = candidates / (counter.last - counter.first)
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
    parser.add_argument("--candidates", type=int, default=1_000)
    parser.add_argument("--blocs", type=int, default=10, help="attestations per candidate")
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    for n in range(args.runs):
        for webhooks in (False, True):
            with tempfile.TemporaryDirectory(prefix="certibloc-bench-") as tmp:
                result = asyncio.run(one_run(Path(tmp), args.candidates, args.blocs, webhooks))
            result["with_webhooks"] = float(webhooks)
            runs.append(result)
            print(f"run {n + 1}{' (with webhooks)' if webhooks else ''}: {json.dumps(result)}")
    mail_only = [r for r in runs if not r["with_webhooks"]]
    both = [r for r in runs if r["with_webhooks"]]
    summary = {
        "runs": runs,
        "blocs_per_email": args.blocs,
        "median_emails_per_second": statistics.median(r["emails_per_second"] for r in mail_only),
        "median_attestations_mailed_per_second": statistics.median(
            r["attestations_mailed_per_second"] for r in mail_only
        ),
        "median_emails_per_second_with_webhooks": statistics.median(
            r["emails_per_second"] for r in both
        ),
        "median_webhooks_per_second": statistics.median(r["webhooks_per_second"] for r in both),
    }
    print(
        f"e-mails: median {summary['median_emails_per_second']:.0f}/s alone "
        f"({summary['median_attestations_mailed_per_second']:.0f} attestations/s); with webhooks "
        f"{summary['median_emails_per_second_with_webhooks']:.0f} e-mails/s and "
        f"{summary['median_webhooks_per_second']:.0f} webhooks/s"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "notifications.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
