"""Session-wide real components: a nats-server with JetStream on a free port and PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from tests.support.processes import NatsServer, Postgres, postgres_server


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    with postgres_server(tmp_path_factory.mktemp("pg")) as pg:
        yield pg


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def clean_streams(nc: Client) -> None:
    """Tests that use the services' fixed stream names start from empty streams."""
    js = nc.jetstream()
    for name in await js.streams_info():
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name.config.name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """eventsourcing settings for a fresh, empty store of each kind."""
    if request.param == "sqlite":
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "store.sqlite"),
        }
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.env(pg.new_schema(f"t_{uuid.uuid4().hex[:12]}"))


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "store.sqlite"),
    }
