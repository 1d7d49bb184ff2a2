"""PostgreSQL process recorder that writes large units of work without psycopg's pipeline mode.

eventsourcing writes a unit of work (tracking record, LOCK, NOTIFY, one INSERT whose parameter
is the array of all new events) in a psycopg pipeline. With psycopg 3.3.9 (pure-Python and C
implementations alike) a pipeline carrying a parameter of several megabytes hangs for good: the
server waits in ``ClientRead`` for the rest of the INSERT while the client waits for results
(the class of psycopg#685; reproduced here with LOCK + NOTIFY + a 10 MB ``bytea[]`` INSERT, and
hit by the registry saving a 10,000-line PV). The same statements outside a pipeline go through.
Small units keep the pipeline (fewer round trips); large ones are written statement by statement.

Selected through eventsourcing's own ``PROCESS_RECORDER_TOPIC`` (see ``ServiceSettings``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.utils import retry

PIPELINE_LIMIT_BYTES = 1_000_000  # well under the sizes seen to hang


class LargeWriteSafeProcessRecorder(PostgresProcessRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if sum(len(e.state) for e in stored_events) < PIPELINE_LIMIT_BYTES:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        # The same statements as the pipelined path, one after the other, in one transaction;
        # psycopg errors become eventsourcing's (IntegrityError...) in get_connection().
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)  # the tracking record
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
