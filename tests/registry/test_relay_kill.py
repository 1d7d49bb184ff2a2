"""The registry killed with SIGKILL while its relay is publishing a large PV, then restarted:
every event ends up on the stream exactly once, with an unbroken position chain."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.client import Client

from tests.registry.harness import STREAM, post_cohort, stream_events
from tests.support.processes import NatsServer, registry_process

CANDIDATES = 400
BLOCS = 12


async def test_registry_killed_mid_relay_publishes_every_event_exactly_once(
    tmp_path: Path, nats_server: NatsServer, nc: Client, clean_streams: None
) -> None:
    # Small relay batches: many stored positions to die between.
    service, key = await asyncio.to_thread(
        registry_process, tmp_path, nats_server.url, REGISTRY_RELAY_BATCH="5"
    )
    service.start()
    js = nc.jetstream()
    try:
        auth = {"Authorization": f"Bearer {key}"}
        await post_cohort(service.url, auth, "K", CANDIDATES, BLOCS)
        # one registration and one decision (the PV's, for that candidate) each
        expected = CANDIDATES * 2
        key_events = 1  # the demo center's key, published as a digest

        async def published() -> int:
            return int((await js.stream_info(STREAM)).state.messages)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (count := await published()) < CANDIDATES + CANDIDATES // 8:
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
        service.kill()
        assert count < expected, "the relay finished before it could be killed"
        service.start()
        events = await stream_events(js, expected, timeout=60)
        assert (await js.stream_info(STREAM)).state.messages == expected + key_events
    finally:
        service.stop()
    positions = [e["position"] for e in events]
    assert len(events) == expected
    assert len(set(positions)) == expected
    previous = 2000  # the key event: notification 2 (the center itself, 1, stays internal)
    for event in events:
        assert event["previous"] == previous
        previous = event["position"]
