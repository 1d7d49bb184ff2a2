"""Partitioned lanes on PostgreSQL: four partitions, two replicas of the attestations service
and two of the notifications service (separate processes sharing their service's schema),
each applying its own partitions (static assignment: p % 2 == its index).

A PV for 240 candidates flows through; one attestations replica is killed with SIGKILL part-way
through and restarted, then one notifications replica (the one running the relay and its
share of the dispatching). In the end every validated bloc has exactly one attestation, every
candidate exactly one e-mail listing them, each replica applied its partitions and only its
own, and each did part of the work.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from prometheus_client.parser import text_string_to_metric_families

from contracts.subjects import STREAMS, candidate_key, partition_of
from services.notifications.sink import message_count, receptions
from tests.registry.harness import candidate, pv
from tests.runtime.test_metrics import metrics_url
from tests.support.mailbox import delivery_keys, mailed_attestations
from tests.support.processes import Postgres, eventually
from tests.support.system import System

PARTITIONS = 4
CANDIDATES = 240
BLOCS = 5
RECORDED = "fr.certibloc.attestations.attestations-recorded.v1"


def applied_per_lane(text: str) -> dict[str, float]:
    """Events a process's consumers applied, per durable (lane), from its /metrics."""
    found: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "certibloc_consumer_events_applied_total":
                found[s.labels["consumer"]] += s.value
    return dict(found)


async def scrape(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    return applied_per_lane((await http.get(metrics_url(url))).text)


async def register_and_post(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.url("registry"), timeout=60) as http:
        slots = asyncio.Semaphore(8)

        async def register(i: int) -> None:
            async with slots:
                r = await http.post(
                    "/v1/candidates", json=candidate(f"P{i:05d}"), headers=system.auth
                )
                assert r.status_code == 201, r.text

        await asyncio.gather(*(register(i) for i in range(CANDIDATES)))
        lines = [
            {"candidate_number": f"P{i:05d}", "bloc": f"RNCP40705BC{b:02d}", "grade": "13"}
            for i in range(CANDIDATES)
            for b in range(1, BLOCS + 1)
        ]
        r = await http.post(
            "/v1/deliberations", json=pv(lines), headers={**system.auth, "Idempotency-Key": "p-pv"}
        )
        assert r.status_code == 201, r.text


async def recorded_events(js: JetStreamContext) -> list[tuple[str, dict[str, Any]]]:
    """(subject, data) of every attestations-recorded message, in stream order."""
    total = (await js.stream_info(STREAMS["attestations"])).state.messages
    sub = await js.subscribe(
        "certibloc.attestations.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    out = []
    try:
        for _ in range(total):
            msg = await sub.next_msg(timeout=10)
            event = orjson.loads(msg.data)
            if event["type"] == RECORDED:
                out.append((msg.subject, event["data"]))
    finally:
        await sub.unsubscribe()
    return out


async def test_two_replicas_over_four_partitions_share_the_work_exactly_once(
    tmp_path: Path, postgres: Postgres
) -> None:
    settings = {
        "NOTIFICATIONS_CLAIM_TIMEOUT": "3",
        # Small batches: the 240 decisions take many, so the kills fall mid-PV.
        **{
            f"{service}_{knob}": "8"
            for service in ("REGISTRY", "ATTESTATIONS", "NOTIFICATIONS")
            for knob in ("CONSUMER_BATCH", "RELAY_BATCH")
        },
    }
    with System(
        tmp_path / "system",
        postgres=postgres,
        settings=settings,
        partitions=PARTITIONS,
        replicas={"attestations": 2, "notifications": 2},
    ) as system:
        nc = await system.nats.connect()
        js = nc.jetstream()
        lanes_before_kill: dict[str, dict[str, float]] = {}
        async with httpx.AsyncClient(timeout=10) as http:
            try:
                posting = asyncio.create_task(register_and_post(system))

                # The SMTP sink is frozen (SIGSTOP) from a quarter of the attestations until
                # the notifications replica's kill, then thawed: otherwise, on a loaded
                # machine, every e-mail can be sent while attestations#1 restarts or while
                # the metrics are scraped (seen four times), and the kill would test nothing.
                # Frozen, the dispatchers wait on SMTP (timeout, then retry with backoff) with
                # deliveries claimed, so the kill lands mid-delivery. The sink keeps one file
                # per Message-ID: a message both the killed replica and its successor sent is
                # counted once (the receiver's deduplication).
                sink = system.sink.process
                assert sink is not None

                async def attestations_progress() -> bool:
                    info = await js.stream_info(STREAMS["attestations"])
                    if info.state.messages < CANDIDATES // 4:
                        return False
                    sink.send_signal(signal.SIGSTOP)
                    return True

                await eventually(attestations_progress, 90, "a quarter of the attestations")
                try:
                    lanes_before_kill["attestations#1"] = await scrape(
                        http, system.url("attestations#1")
                    )
                    system.kill("attestations#1")
                    info = await js.stream_info(STREAMS["attestations"])
                    assert info.state.messages < CANDIDATES, "the kill came after the work"
                    system.restart("attestations#1")

                    # The notifications replica 0 has applied events on its lanes (queued
                    # e-mails: its consumers do not wait on SMTP) before it is killed.
                    async def notifications_worked() -> dict[str, float] | None:
                        lanes = await scrape(http, system.url("notifications"))
                        return lanes if any(n > 0 for n in lanes.values()) else None

                    lanes_before_kill["notifications"] = await eventually(
                        notifications_worked, 90, "the notifications replica's first events"
                    )
                    system.kill("notifications")  # replica 0: the relay and half the lanes
                    assert message_count(system.mail_dir) < CANDIDATES, (
                        "the kill came after the work"
                    )
                finally:
                    sink.send_signal(signal.SIGCONT)
                system.restart("notifications")
                await asyncio.wait_for(posting, timeout=60)

                await eventually(
                    lambda: message_count(system.mail_dir) >= CANDIDATES, 120, "every e-mail"
                )

                # Every candidate's decision recorded once, on its candidate's partition.
                recorded = await recorded_events(js)
                assert len(recorded) == CANDIDATES
                for subject, data in recorded:
                    key = candidate_key(data["exam_center"], data["candidate_number"])
                    assert subject.split(".")[2] == f"p{partition_of(key, PARTITIONS)}"
                assert len({d["candidate_number"] for _, d in recorded}) == CANDIDATES
                issued = [a["attestation_id"] for _, d in recorded for a in d["issued"]]
                assert len(issued) == len(set(issued)) == CANDIDATES * BLOCS

                # One e-mail per candidate, every attestation in exactly one; none received
                # twice but those in flight when the notifications replica was killed.
                keys = delivery_keys(system.mail_dir)
                assert len(keys) == CANDIDATES and set(keys.values()) == {1}
                assert mailed_attestations(system.mail_dir) == Counter(issued)
                resent = [n for n in receptions(system.mail_dir).values() if n > 1]
                assert len(resent) <= 64 and max(resent, default=1) <= 2

                # Each replica applied its own partitions only, and part of the work.
                for service in ("attestations", "notifications"):
                    for index, process in enumerate(system.replicas_of(service)):
                        label = service if index == 0 else f"{service}#{index}"
                        lanes = Counter(await scrape(http, process.url))
                        lanes.update(lanes_before_kill.get(label, {}))
                        mine = {p for p in range(PARTITIONS) if p % 2 == index}
                        worked = {lane for lane, n in lanes.items() if n > 0}
                        assert worked, f"{label} did nothing"
                        assert {int(lane.rsplit("-p", 1)[1]) for lane in worked} <= mine, (
                            label,
                            worked,
                        )
            finally:
                await nc.close()
