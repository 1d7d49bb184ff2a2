"""A unit of work of several megabytes on PostgreSQL: eventsourcing's pipelined write hangs for
good at that size with psycopg 3.3 (see services/runtime/postgres.py); ours goes through, in
one transaction with its tracking record."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, Tracking

from services.runtime.postgres import PIPELINE_LIMIT_BYTES, LargeWriteSafeProcessRecorder
from services.runtime.store import ServiceApplication
from tests.support.processes import Postgres


class Blob(Aggregate):
    @event("Stored")
    def __init__(self, data: str) -> None:
        self.data = data


class Store(ServiceApplication):
    name = "Blobs"


@pytest.fixture
def app(postgres: Postgres) -> Any:
    schema = postgres.new_schema(f"t_{uuid.uuid4().hex[:12]}")
    application = Store(postgres.env(schema))
    yield application
    application.close()


def test_a_unit_of_several_megabytes_is_recorded_with_its_tracking(app: Store) -> None:
    assert isinstance(app.recorder, LargeWriteSafeProcessRecorder)
    unit: ProcessingEvent[uuid.UUID] = ProcessingEvent()
    blobs = [Blob(os.urandom(1500).hex()) for _ in range(4000)]  # ~12 MB of state
    app.stage(unit, *blobs)
    app.record(unit, Tracking("upstream", 1000))
    assert sum(len(b.data) for b in blobs) > 10 * PIPELINE_LIMIT_BYTES
    assert app.process_recorder.max_tracking_id("upstream") == 1000
    assert app.process_recorder.max_notification_id() == 4000
    assert app.repository.get(blobs[-1].id).data == blobs[-1].data

    # All or nothing: the same tracking position again records none of the new events.
    again: ProcessingEvent[uuid.UUID] = ProcessingEvent()
    app.stage(again, *(Blob(os.urandom(1500).hex()) for _ in range(1000)))
    with pytest.raises(IntegrityError):
        app.record(again, Tracking("upstream", 1000))
    assert app.process_recorder.max_notification_id() == 4000
