"""Fault tests: while a 2,000-line PV flows through the three services (separate processes),
one of them — or nats-server — is killed with SIGKILL at a random point and restarted. In the
end every validated bloc has exactly one attestation, every candidate exactly one e-mail, and
every attestation is listed in exactly one of them.

The kill point is drawn from a seeded generator (``CERTIBLOC_FAULT_SEED`` to replay one); the
seed and the point are printed, so a failure can be reproduced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.subjects import STREAMS
from services.notifications.sink import message_count, receptions
from tests.registry.harness import candidate, pv
from tests.support.mailbox import delivery_keys, mailed_attestations
from tests.support.processes import eventually
from tests.support.system import System

CANDIDATES = 200
BLOCS = 10  # 10 of the 12 blocs: no diploma, so one attestation per line
LINES = CANDIDATES * BLOCS
RECORDED = "fr.certibloc.attestations.attestations-recorded.v1"
DISPATCH_CONCURRENCY = 16
SEED = int(os.environ.get("CERTIBLOC_FAULT_SEED", "20261126"))


async def post_with_retries(system: System) -> None:
    """What an exam center's client does: retry on a broken connection; candidates and the PV
    (same Idempotency-Key) are safe to send again."""
    registry = system.url("registry")
    async with httpx.AsyncClient(base_url=registry, timeout=60) as http:

        async def send(path: str, body: Any, headers: dict[str, str]) -> None:
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    r = await http.post(path, json=body, headers=headers)
                    if r.status_code in (200, 201):
                        return
                    assert r.status_code >= 500, r.text  # a 4xx would be our bug
                assert asyncio.get_running_loop().time() < deadline, f"{path} never accepted"
                await asyncio.sleep(0.1)

        slots = asyncio.Semaphore(8)

        async def register(i: int) -> None:
            async with slots:
                await send("/v1/candidates", candidate(f"K{i:05d}"), system.auth)

        await asyncio.gather(*(register(i) for i in range(CANDIDATES)))
        lines = [
            {"candidate_number": f"K{i:05d}", "bloc": f"RNCP40705BC{b:02d}", "grade": "11"}
            for i in range(CANDIDATES)
            for b in range(1, BLOCS + 1)
        ]
        await send("/v1/deliberations", pv(lines), {**system.auth, "Idempotency-Key": "fault-pv"})


async def stream_messages(js: JetStreamContext, stream: str) -> int:
    try:
        info = await js.stream_info(stream)
    except (NotFoundError, TimeoutError, nats.errors.Error):
        return 0
    return int(info.state.messages)


async def settled(js: JetStreamContext) -> bool:
    """Every durable consumer of every stream has been delivered and has acknowledged all."""
    for stream in STREAMS.values():
        with contextlib.suppress(NotFoundError):
            for consumer in await js.consumers_info(stream):
                if consumer.num_pending or consumer.num_ack_pending:
                    return False
    return True


async def recorded_events(js: JetStreamContext) -> list[dict[str, Any]]:
    expected = await stream_messages(js, STREAMS["attestations"])
    sub = await js.subscribe(
        "certibloc.attestations.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    out: list[dict[str, Any]] = []
    try:
        for _ in range(expected):
            event = orjson.loads((await sub.next_msg(timeout=10)).data)
            if event["type"] == RECORDED:
                out.append(event["data"])
    finally:
        await sub.unsubscribe()
    return out


@pytest.mark.parametrize("victim", ["registry", "attestations", "notifications", "nats"])
async def test_sigkill_at_a_random_point_loses_and_doubles_nothing(
    victim: str, tmp_path: Path
) -> None:
    rng = random.Random(f"{SEED}:{victim}")
    settings = {
        "NOTIFICATIONS_CLAIM_TIMEOUT": "3",  # a killed sender's claims are retaken soon
        "NOTIFICATIONS_DISPATCH_CONCURRENCY": str(DISPATCH_CONCURRENCY),
        # Batches smaller than in production (500 fetched, 100 published), so that the
        # 200 decisions take several and a kill can fall between or within any of them.
        **{
            f"{service}_{knob}": "16"
            for service in ("REGISTRY", "ATTESTATIONS", "NOTIFICATIONS")
            for knob in ("CONSUMER_BATCH", "RELAY_BATCH")
        },
    }
    with System(tmp_path / "system", settings=settings) as system:
        nc = await system.nats.connect(max_reconnect_attempts=-1)
        js = nc.jetstream()
        try:
            # Where to strike: part-way through what the victim does for this PV. The
            # registry publishes one registration and one decision per candidate; the
            # attestations service one message and the notifications service one e-mail per
            # candidate's decision.
            registry_events = 2 * CANDIDATES
            progress: Callable[[], Awaitable[int]]
            total = registry_events if victim == "registry" else CANDIDATES
            if victim == "registry":
                threshold = rng.randint(CANDIDATES + 1, CANDIDATES + CANDIDATES * 3 // 4)

                async def progress() -> int:
                    return await stream_messages(js, STREAMS["registry"])
            elif victim == "notifications":
                threshold = rng.randint(CANDIDATES // 20, CANDIDATES * 3 // 4)

                async def progress() -> int:
                    return message_count(system.mail_dir)
            else:
                threshold = rng.randint(CANDIDATES // 20, CANDIDATES * 3 // 4)

                async def progress() -> int:
                    return await stream_messages(js, STREAMS["attestations"])

            print(f"seed {SEED}: SIGKILL {victim} once progress reaches {threshold}")
            posting = asyncio.create_task(post_with_retries(system))

            async def reached() -> bool:
                if posting.done():
                    posting.result()  # surface a failure to post
                return await progress() >= threshold

            await eventually(reached, 90, f"{victim} progress {threshold}")
            system.kill(victim)
            killed_at = threshold if victim == "nats" else await progress()
            system.restart(victim)
            await asyncio.wait_for(posting, timeout=90)

            async def done() -> bool:
                mails = message_count(system.mail_dir)
                recorded = await stream_messages(js, STREAMS["attestations"])
                return mails >= CANDIDATES and recorded >= CANDIDATES and await settled(js)

            await eventually(done, 120, "every attestation issued and mailed")
            assert killed_at < total, "the kill came after the work was done"

            recorded = await recorded_events(js)
            assert len(recorded) == CANDIDATES, "one message per candidate's decision"
            assert len({(r["exam_center"], r["candidate_number"]) for r in recorded}) == CANDIDATES
            issued = [a for r in recorded for a in r["issued"]]
            ids = {a["attestation_id"] for a in issued}
            assert len(issued) == LINES and len(ids) == LINES, "one attestation per bloc"
            assert {a["code"] for r in recorded for a in r["issued"]} == {
                f"RNCP40705BC{b:02d}" for b in range(1, BLOCS + 1)
            }
            # One e-mail per candidate; every attestation in exactly one of them.
            keys = delivery_keys(system.mail_dir)
            assert len(keys) == CANDIDATES and all(k.endswith(":issued") for k in keys)
            mailed = mailed_attestations(system.mail_dir)
            assert set(mailed) == ids and set(mailed.values()) == {1}
            # Each e-mail received once; only those in flight when the notifications service
            # died may be sent again (same Message-ID, recognised by the receiver).
            counts = receptions(system.mail_dir)
            resent = [stem for stem, n in counts.items() if n > 1]
            if victim == "notifications":
                assert max(counts.values()) <= 2 and len(resent) <= DISPATCH_CONCURRENCY
            else:
                assert resent == []
            assert await settled(js)
        finally:
            await nc.close()
