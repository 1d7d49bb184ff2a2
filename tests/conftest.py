"""Session-wide real components: a nats-server with JetStream on a free port and PostgreSQL.

Every NATS server of the session runs with the services' authorization, all with one set of
NKeys created here (``CERTIBLOC_NATS_CREDENTIALS_DIR``, which services in this process and
every process the tests start read): tests connect as the ``operator``, services as
themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from services.runtime import natsauth
from services.runtime.provision import provision
from tests.support.processes import CREDENTIALS_ENV, NatsServer, Postgres, postgres_server


def pytest_configure(config: pytest.Config) -> None:
    credentials = Path(tempfile.mkdtemp(prefix="certibloc-nats-credentials-"))
    natsauth.ensure_credentials(credentials)
    os.environ[CREDENTIALS_ENV] = str(credentials)


def pytest_unconfigure(config: pytest.Config) -> None:
    credentials = os.environ.pop(CREDENTIALS_ENV, None)
    if credentials:
        shutil.rmtree(credentials, ignore_errors=True)


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
    client = await nats_server.connect()
    yield client
    await client.close()


@pytest.fixture
async def clean_streams(nc: Client) -> None:
    """Tests that use the services' fixed stream names start from empty streams (provisioned
    again, as at a first start)."""
    js = nc.jetstream()
    for name in await js.streams_info():
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name.config.name)
    await provision(js)


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
