from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.registry.harness import Registry, serve_registry
from tests.support.processes import NatsServer


@pytest.fixture
def registry(tmp_path: Path, nats_server: NatsServer, clean_streams: None) -> Iterator[Registry]:
    with serve_registry(tmp_path / "var", nats_server.url) as served:
        yield served


@pytest.fixture
async def client(registry: Registry) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=registry.url, timeout=30) as http:
        yield http
