"""The bus is authenticated: no anonymous client, and each service's NKey may do only what
that service does (``services.runtime.natsauth``), on a real nats-server started from the
configuration ``make run`` uses."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import StreamConfig
from nats.js.errors import Error as JetStreamError

from contracts.subjects import CONSUMERS, STREAMS, deadletter_stream
from services.runtime import natsauth
from services.runtime.nats import ensure_stream
from services.runtime.provision import provision
from tests.support.processes import NatsServer, eventually


async def _as(nats_server: NatsServer, user: str) -> tuple[Client, list[str]]:
    """A client with ``user``'s NKey, and the errors the server sends it."""
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    client = await nats_server.connect(user, error_cb=on_error, allow_reconnect=False)
    return client, errors


async def _messages(nc: Client, stream: str) -> int:
    return int((await nc.jetstream().stream_info(stream)).state.messages)


async def test_an_anonymous_client_is_refused(nats_server: NatsServer) -> None:
    with pytest.raises((NatsError, OSError)) as refused:
        await nats.connect(
            nats_server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2
        )
    assert "authorization" in str(refused.value).lower() or refused.value is not None


async def test_an_unknown_key_is_refused(nats_server: NatsServer, tmp_path: object) -> None:
    seed = natsauth.new_seed()
    with pytest.raises((NatsError, OSError)):
        await nats.connect(
            nats_server.url,
            nkeys_seed_str=seed.decode(),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=2,
        )


async def test_notifications_cannot_publish_on_the_registry_subjects(
    nats_server: NatsServer, nc: Client
) -> None:
    stream = STREAMS["registry"]
    await ensure_stream(nc.jetstream(), stream, "registry", replicas=1)
    before = await _messages(nc, stream)
    client, errors = await _as(nats_server, "notifications")
    try:
        forged = b'{"type": "fr.certibloc.registry.bloc-validated.v1"}'
        await client.publish("certibloc.registry.bloc-validated.v1", forged)
        await client.flush()
        await eventually(lambda: errors, 5, "the server's permissions violation")
        assert "permissions violation" in errors[0].lower()
        with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
            await client.jetstream(timeout=0.3).publish("certibloc.registry.x.v1", forged)
    finally:
        await client.close()
    assert await _messages(nc, stream) == before


async def test_no_service_can_delete_or_purge_a_stream(nats_server: NatsServer, nc: Client) -> None:
    stream = STREAMS["registry"]
    await ensure_stream(nc.jetstream(), stream, "registry", replicas=1)
    for service in natsauth.SERVICES:
        client, _ = await _as(nats_server, service)
        try:
            js = client.jetstream(timeout=0.3)
            with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
                await js.delete_stream(stream)
            with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
                await js.purge_stream(stream)
        finally:
            await client.close()
    assert (await nc.jetstream().stream_info(stream)).config.name == stream


async def test_a_service_reads_no_one_elses_messages(nats_server: NatsServer, nc: Client) -> None:
    """Subscribing to events, or to another service's replies, is refused: the only way in
    is the service's own durable consumers."""
    client, errors = await _as(nats_server, "attestations")
    try:
        await client.subscribe("certibloc.registry.>")
        await client.subscribe(f"{natsauth.inbox_prefix('notifications')}.>")
        await client.flush()
        await eventually(lambda: len(errors) >= 2, 5, "two permissions violations")
        assert all("permissions violation" in e.lower() for e in errors)
    finally:
        await client.close()


def test_each_service_may_publish_only_on_its_own_subjects() -> None:
    for service in natsauth.SERVICES:
        allowed = natsauth.permissions(service)["publish"]["allow"]
        events = [s for s in allowed if s.startswith("certibloc.")]
        assert events[0] == f"certibloc.{service}.>"
        assert all(
            s in (f"certibloc.{service}.>", f"certibloc.deadletter.{service}.>") for s in events
        )
        assert not [s for s in allowed if "DELETE" in s or "PURGE" in s or s in (">", "$JS.>")]
        streams = {STREAMS[service], deadletter_stream(service)} | {
            STREAMS[producer] for producer, _ in CONSUMERS[service]
        }
        for api in (s for s in allowed if s.startswith("$JS.")):
            assert streams & set(api.split(".")), f"{service}: {api} names no stream of its own"
        assert natsauth.permissions(service)["subscribe"]["allow"] == [
            f"{natsauth.inbox_prefix(service)}.>"
        ]


async def test_no_service_can_create_or_reconfigure_a_stream_or_a_consumer(
    nats_server: NatsServer, nc: Client
) -> None:
    """A stream's configuration can source another stream or capture any subject: a service
    allowed to update its own could read another's dead letters or replies. Only the
    provisioner creates and aligns them."""
    for service in natsauth.SERVICES:
        client, _ = await _as(nats_server, service)
        try:
            js = client.jetstream(timeout=0.3)
            own = STREAMS[service]
            info = await js.stream_info(own)  # reading its own stream's state is allowed
            with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
                await js.update_stream(
                    StreamConfig(name=own, subjects=[*info.config.subjects, "_INBOX_registry.>"])
                )
            with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
                await js.add_stream(StreamConfig(name=f"X_{service}", subjects=["x.>"]))
            with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
                await js.add_consumer(own, durable_name="spy")
        finally:
            await client.close()
    assert (await nc.jetstream().stream_info(STREAMS["attestations"])).config.subjects == [
        "certibloc.attestations.>"
    ]


async def test_the_provisioner_creates_the_contracts_streams_and_nothing_else(
    nats_server: NatsServer, nc: Client
) -> None:
    client, _ = await _as(nats_server, natsauth.PROVISIONER)
    try:
        js = client.jetstream(timeout=0.3)
        await provision(js)  # again: aligns, changes nothing
        with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
            await js.add_stream(StreamConfig(name="ELSEWHERE", subjects=["elsewhere.>"]))
        with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
            await js.delete_stream(STREAMS["registry"])
        with pytest.raises((NatsError, JetStreamError, asyncio.TimeoutError)):
            await js.publish("certibloc.registry.x.v1", b"{}")
    finally:
        await client.close()
    names = {s.config.name for s in await nc.jetstream().streams_info()}
    assert "ELSEWHERE" not in names
    assert {STREAMS["registry"], deadletter_stream("attestations")} <= names
