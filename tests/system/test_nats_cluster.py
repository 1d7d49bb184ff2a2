"""A three-node NATS cluster losing one node mid-run loses nothing.

Durability per deployment: a single nats-server (``make run``, most tests) keeps each stream as
one replica (``CERTIBLOC_NATS_REPLICAS=1``), durable on that node's disk only; a cluster runs
every stream with three replicas (``CERTIBLOC_NATS_REPLICAS=3``). This test proves the R3 case:
an acknowledged publish survives the loss of one node because JetStream acknowledges a publish
to an R3 stream only once a quorum (two of the three replicas) has stored it, so whichever node
dies, a surviving replica holding every acknowledged message becomes the leader. The outbox
relay records its position only after those acknowledgements, and republishes anything not
acknowledged under the same ``Nats-Msg-Id`` (deduplicated), so nothing is lost or doubled.

The cluster: three nats-server processes on loopback (``tests/support/cluster.py``); the three
services in this process on real HTTP, given every node's URL. A cohort is posted; once its PV
is recorded, the node leading the registry's stream is killed with SIGKILL while the PV's events
are being published, and every attestation and e-mail they lead to comes after the kill. The
killed node is then restarted and must catch up from the survivors.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.subjects import STREAMS, SUBJECT_PREFIX
from services.notifications.sink import message_count, receptions
from services.runtime.nats import connect
from services.runtime.natsauth import OPERATOR, inbox_prefix, seed_file
from tests.notifications.harness import serve_all
from tests.registry.harness import CENTER_A, post_cohort
from tests.support.cluster import NatsCluster, credentials_dir
from tests.support.mailbox import delivery_keys, mailed_attestations
from tests.support.processes import NatsServer, eventually, free_port

CANDIDATES = 200
BLOCS = 3
EXPECTED = CANDIDATES  # one e-mail per candidate, listing one attestation per validated bloc
RECORDED = "fr.certibloc.attestations.attestations-recorded.v1"
T = TypeVar("T")
BUDGET = 55.0  # seconds, for the whole test


async def answered(call: Callable[[], Awaitable[T]], deadline: float) -> T:
    """A JetStream API call retried until it gets an answer: while a stream or the meta group
    elects a new leader (seconds, after a SIGKILL), requests time out or get a 503."""
    while True:
        try:
            return await call()
        except (NatsError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def stream_envelopes(js: JetStreamContext, service: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` events on a service's stream, in stream order."""
    sub = await js.subscribe(
        f"{SUBJECT_PREFIX}.{service}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        return [orjson.loads((await sub.next_msg(timeout=5)).data) for _ in range(count)]
    finally:
        await sub.unsubscribe()


async def check_stream(js: JetStreamContext, service: str, deadline: float) -> list[dict[str, Any]]:
    """The stream still has three replicas configured and holds one unbroken chain of events:
    every ``previous`` is the position before it, no position twice, no sequence missing."""
    info = await answered(partial(js.stream_info, STREAMS[service]), deadline)
    assert info.config.num_replicas == 3
    assert info.cluster is not None and len(info.cluster.replicas or []) == 2
    state = info.state
    assert state.last_seq == state.messages, "a sequence is missing"
    events = await answered(partial(stream_envelopes, js, service, state.messages), deadline)
    positions = sorted(e["position"] for e in events)
    assert len(set(positions)) == len(events), "an event was stored twice"
    previous = {e["position"]: e["previous"] for e in events}
    assert [previous[p] for p in positions] == [0, *positions[:-1]], "the chain has a gap"
    return events


def stream_detail(cluster: NatsCluster, node: int) -> dict[str, dict[str, Any]]:
    """What one node itself holds of each stream (its monitoring endpoint, not the leader)."""
    jsz = cluster.nodes[node].monitor("jsz?streams=true")
    return {
        s["name"]: s
        for account in jsz.get("account_details") or []
        for s in account["stream_detail"]
    }


async def test_losing_one_node_of_three_mid_run_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadline = time.monotonic() + BUDGET
    monkeypatch.setenv("CERTIBLOC_NATS_REPLICAS", "3")  # every service, every stream it creates
    with NatsCluster(tmp_path / "nats") as cluster:
        nc = await connect(
            cluster.urls,
            "test-observer",
            seed_file=seed_file(credentials_dir(cluster.root), OPERATOR),
            inbox_prefix="_INBOX",
        )
        js = nc.jetstream()
        try:
            with serve_all(tmp_path, cluster.urls) as (registry, att, notifications):
                recorded = registry.notification_count()

                def registry_relay_position() -> int:
                    recorder = registry.app.process_recorder
                    return recorder.max_tracking_id(f"relay:{STREAMS['registry']}") or 0

                posting = asyncio.create_task(
                    post_cohort(registry.url, registry.auth(), "K", CANDIDATES, BLOCS)
                )
                # Mid-run: the PV is recorded; its events are being published, attestations
                # issued and mailed.
                await eventually(
                    lambda: registry.notification_count() > recorded + CANDIDATES,
                    deadline - time.monotonic(),
                    "the PV to be recorded",
                )
                info = await js.stream_info(STREAMS["registry"])
                assert info.cluster is not None and info.cluster.leader
                leader = info.cluster.leader
                victim = cluster.index(leader)
                cluster.kill(victim)
                killed_at = time.monotonic()
                mailed_at_kill = message_count(notifications.mail_dir)
                published_at_kill = registry_relay_position()
                assert mailed_at_kill < EXPECTED, "everything was done before the kill"
                await asyncio.wait_for(posting, timeout=deadline - time.monotonic())

                await eventually(
                    lambda: message_count(notifications.mail_dir) >= EXPECTED,
                    deadline - time.monotonic(),
                    "every e-mail",
                )
                recovered_in = time.monotonic() - killed_at

                # Every expected attestation issued once: each candidate holds one per bloc.
                issued: list[str] = []
                for i in range(CANDIDATES):
                    mine = att.app.attestations_of(CENTER_A, f"K{i:05d}") or []
                    assert sorted(a.code for a in mine) == [
                        f"RNCP40705BC{b:02d}" for b in range(1, BLOCS + 1)
                    ]
                    issued.extend(a.public_id for a in mine)
                assert len(set(issued)) == CANDIDATES * BLOCS

                # Streams: still R3, no gap, no duplicate; every consumer reached their end.
                reg_events = await check_stream(js, "registry", deadline)
                att_events = await check_stream(js, "attestations", deadline)
                await check_stream(js, "notifications", deadline)
                recorded_events = [e["data"] for e in att_events if e["type"] == RECORDED]
                assert len(recorded_events) == CANDIDATES  # one per candidate's decision
                on_stream = [a["attestation_id"] for r in recorded_events for a in r["issued"]]
                assert sorted(on_stream) == sorted(issued)
                reg_end = max(e["position"] for e in reg_events)
                att_end = max(e["position"] for e in att_events)
                assert registry_relay_position() == reg_end
                assert att.app.process_recorder.max_tracking_id("registry") == reg_end

                def notifications_caught_up() -> bool:
                    recorder = notifications.app.process_recorder
                    return bool(
                        recorder.max_tracking_id("registry") == reg_end
                        and recorder.max_tracking_id("attestations") == att_end
                    )

                await eventually(
                    notifications_caught_up, deadline - time.monotonic(), "notifications' consumers"
                )

                # Exactly one e-mail per candidate, each received once (the sink's journal
                # counts receptions; a resend would replace the file but add a line), and
                # every attestation listed in exactly one.
                keys = delivery_keys(notifications.mail_dir)
                assert message_count(notifications.mail_dir) == EXPECTED
                assert set(receptions(notifications.mail_dir).values()) == {1}
                assert len(keys) == EXPECTED and set(keys.values()) == {1}
                assert mailed_attestations(notifications.mail_dir) == Counter(issued)

                # The killed node comes back and catches up from the survivors.
                cluster.start(victim)
                expected = {}
                for service in ("registry", "attestations", "notifications"):
                    name = STREAMS[service]
                    info = await answered(partial(js.stream_info, name), deadline)
                    expected[name] = info.state.messages

                def caught_up() -> bool:
                    try:
                        held = stream_detail(cluster, victim)
                    except OSError:  # its monitoring port is not open yet
                        return False
                    return all(
                        name in held and held[name]["state"]["messages"] >= count
                        for name, count in expected.items()
                    )

                await eventually(caught_up, deadline - time.monotonic(), f"{leader} to catch up")
                print(  # shown with -s: how long the cluster took to recover
                    f"killed {leader} at registry position {published_at_kill}/{reg_end}, "
                    f"after {mailed_at_kill}/{EXPECTED} e-mails; "
                    f"all delivered {recovered_in:.1f}s after the kill"
                )
        finally:
            await nc.close()


async def test_connect_with_a_list_skips_a_server_that_is_down(nats_server: NatsServer) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    # The pool is tried in random order: a few connections make sure the dead one came first.
    for _ in range(4):
        client: Client = await asyncio.wait_for(
            connect(
                f"{dead}, {nats_server.url}",
                "test-list",
                seed_file=nats_server.seed("registry"),
                inbox_prefix=inbox_prefix("registry"),
            ),
            timeout=10,
        )
        try:
            assert client.is_connected
            assert client.connected_url is not None
            assert client.connected_url.port == nats_server.port
        finally:
            await client.close()
