from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attestations.harness import Attestations
from tests.notifications.harness import Notifications, serve_all
from tests.registry.harness import Registry
from tests.support.processes import NatsServer


@pytest.fixture
def everything(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> Iterator[tuple[Registry, Attestations, Notifications]]:
    with serve_all(tmp_path, nats_server.url) as services:
        yield services
