from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attestations.harness import Attestations, serve_both
from tests.registry.harness import Registry
from tests.support.processes import NatsServer


@pytest.fixture
def services(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> Iterator[tuple[Registry, Attestations]]:
    with serve_both(tmp_path, nats_server.url) as both:
        yield both
