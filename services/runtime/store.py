"""The eventsourcing Application every service builds on.

Its recorder is a *process* recorder, so the same database holds the service's events, the
positions of the upstream logs it has consumed, and its outbox relay's position.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ProcessRecorder, Recording, Tracking
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import get_topic

from services.runtime import tracing
from services.runtime.outbox import OutboxGuard
from services.runtime.postgres import LargeWriteSafeProcessRecorder
from services.runtime.secrets import StoreKeyError

A = TypeVar("A", bound=Aggregate)
log = logging.getLogger(__name__)
RecordedListener = Callable[[Sequence[Any]], None]


class ServiceApplication(Application[UUID]):
    """Base application: process recorder, save listeners, batch-aware aggregate loading."""

    # Aggregates a consumer reads in (nearly) every event, kept in memory between units of work
    # (see ``get_in``); a subclass names them. At most ``cache_size`` are kept.
    cached_types: tuple[type[Aggregate], ...] = ()
    cache_size = 20_000

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self.check_store_key()
        # Set by the service's runtime: refuses what its relay could not publish (save only;
        # consumers' units of work are bounded by the contracts they read).
        self.outbox_guard: OutboxGuard | None = None
        self._saved_listeners: list[Callable[[], None]] = []
        self._recorded_listeners: list[RecordedListener] = []
        self._listeners_lock = threading.Lock()
        self._cache: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._cache_lock = threading.Lock()

    def check_store_key(self) -> None:
        """Refuse a store this application cannot read: one written in clear before
        encryption at rest (an earlier ``make run``'s var/), or encrypted with another key,
        or encrypted while no key is configured. Checked on the first stored event, at
        construction, so a service fails at start with the remedy rather than at the first
        read. Raises StoreKeyError (the message never holds the key)."""
        first = self.process_recorder.select_notifications(start=None, limit=1)
        if not first:
            return
        state = first[0].state
        cipher = self.mapper.cipher
        if cipher is None:
            if _is_plain(state):
                return
            problem = (
                "le store est chiffré mais aucune clé n'est configurée / the store is "
                "encrypted but no key is configured (CIPHER_KEY)"
            )
        else:
            try:
                cipher.decrypt(state)
                return
            except ValueError:
                pass
            if _is_plain(state):
                problem = (
                    "le store a été écrit en clair, avant le chiffrement au repos ; repartir "
                    "d'un store vide (`make clean` pour l'environnement de développement) ou "
                    "rejouer ses événements dans un store chiffré / the store was written in "
                    "clear before encryption at rest: start from an empty store (`make "
                    "clean` in development) or copy its events into an encrypted store"
                )
            else:
                problem = (
                    "la clé du store ne déchiffre pas ses événements (mauvaise clé, ou clé "
                    "perdue : restaurer la clé sauvegardée) / the store key does not decrypt "
                    "its events (wrong or lost key: restore the backed-up key)"
                )
        message = f"{self.name}: {problem}"
        log.error(message)
        raise StoreKeyError(message)

    def construct_recorder(self) -> ProcessRecorder:
        factory = self.factory
        if isinstance(factory, PostgresFactory):
            # Large units of work must not go through a psycopg pipeline (see postgres.py);
            # an explicit PROCESS_RECORDER_TOPIC still wins.
            topic = factory.PROCESS_RECORDER_TOPIC
            if not factory.env.get(topic):
                factory.env[topic] = get_topic(LargeWriteSafeProcessRecorder)
        return factory.process_recorder()

    @property
    def local_reads(self) -> bool:
        """True when the store is an in-process SQLite file (reads take microseconds)."""
        return type(self.recorder).__module__ == "eventsourcing.sqlite"

    @property
    def process_recorder(self) -> ProcessRecorder:
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    def on_saved(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from the saving thread) after each successful write."""
        with self._listeners_lock:
            self._saved_listeners.append(listener)

    def on_recorded(self, listener: RecordedListener) -> None:
        """Call ``listener`` with the domain events of each successful write (from the writing
        thread): counters of what was committed, whichever code path wrote it."""
        with self._listeners_lock:
            self._recorded_listeners.append(listener)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        tracing.stamp_pending(objs)  # the trace context travels with the stored events
        if self.outbox_guard is not None:
            self.outbox_guard.check(e for o in objs for e in getattr(o, "pending_events", ()))
        recordings = super().save(*objs, **kwargs)
        if self._recorded_listeners:
            self._fire_recorded([r.domain_event for r in recordings])
        self._fire_saved()
        return recordings

    @staticmethod
    def stage(unit: ProcessingEvent[UUID], *aggregates: Aggregate) -> None:
        """Make aggregates part of a unit of work; their new events are collected at commit.

        Cheaper than ``unit.collect_events`` per call, whose runtime Protocol checks cost tens
        of microseconds each (a bulk batch stages tens of thousands of times).
        """
        for aggregate in aggregates:
            unit.aggregates[aggregate.id] = aggregate

    def record(self, unit: ProcessingEvent[UUID], tracking: Tracking | None) -> None:
        """Write what a unit of work collected, atomically with ``tracking`` when given.

        Raises ``eventsourcing.persistence.IntegrityError`` when the tracking position was
        already recorded (a redelivery) or an aggregate moved on concurrently.
        """
        for aggregate in unit.aggregates.values():
            if isinstance(aggregate, Aggregate):
                unit.events.extend(aggregate.collect_events())
        self.events.put(unit.events, tracking=tracking)
        if self._recorded_listeners:
            self._fire_recorded(unit.events)
        if self.cached_types:
            with self._cache_lock:
                for aggregate in unit.aggregates.values():
                    if isinstance(aggregate, self.cached_types):
                        cached = self._cache.get(aggregate.id)
                        if cached is not None and cached.version > aggregate.version:
                            continue  # another thread committed a newer one meanwhile
                        self._cache[aggregate.id] = aggregate
                        self._cache.move_to_end(aggregate.id)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        self._fire_saved()

    def record_positions(self, trackings: Sequence[Tracking]) -> None:
        """Several tracking records in one transaction (a relay's position and the last one
        of each partition it published to): all of them, or none. eventsourcing writes one
        per call; its recorders' ``_insert_tracking`` (SQLite and PostgreSQL alike) writes
        one within a transaction of ours."""
        recorder: Any = self.process_recorder
        with recorder.datastore.transaction(commit=True) as cursor:
            for tracking in trackings:
                recorder._insert_tracking(cursor, tracking)

    def get_in(self, unit: ProcessingEvent[UUID], aggregate_id: UUID, cls: type[A]) -> A | None:
        """The aggregate as this unit of work sees it (its pending changes included).

        A cached aggregate is *taken* from the cache by the unit of work and put back only once
        the unit is recorded: the cache never holds changes that were not committed. It may be
        behind the store when a replica wrote meanwhile; then recording fails on the version
        (IntegrityError), the consumer retries, and the retry reads the store.
        """
        found: object | None = unit.aggregates.get(aggregate_id)
        if found is None and issubclass(cls, self.cached_types):
            with self._cache_lock:
                found = self._cache.pop(aggregate_id, None)
            if found is None:
                found = self._get_or_none(aggregate_id)
            if found is not None:  # cached again once the unit is recorded
                unit.aggregates[aggregate_id] = found
        elif found is None:
            found = self._get_or_none(aggregate_id)
        if found is None:
            return None
        if not isinstance(found, cls):
            raise TypeError(f"{aggregate_id} is a {type(found).__name__}, not a {cls.__name__}")
        return found

    def find_owned(
        self,
        unit: ProcessingEvent[UUID] | None,
        scoped_id: UUID,
        legacy_id: UUID,
        cls: type[A],
        exam_center: str,
    ) -> A | None:
        """A record keyed by (center, number) — or, written before that scoping, by the
        number alone: that one counts only if it belongs to ``exam_center``, which its first
        event says (read alone, so another center's older record is never loaded whole)."""
        found = (
            self.get_in(unit, scoped_id, cls)
            if unit is not None
            else self.get_optional(scoped_id, cls)
        )
        if found is not None:
            return found
        if (unit is None or legacy_id not in unit.aggregates) and self._owner(
            legacy_id
        ) != exam_center:
            return None
        legacy = (
            self.get_in(unit, legacy_id, cls)
            if unit is not None
            else self.get_optional(legacy_id, cls)
        )
        return legacy if getattr(legacy, "exam_center", None) == exam_center else None

    def _owner(self, aggregate_id: UUID) -> str | None:
        first = self.process_recorder.select_events(aggregate_id, limit=1)
        if not first:
            return None
        owner = getattr(self.mapper.to_domain_event(first[0]), "exam_center", None)
        return owner if isinstance(owner, str) else None

    def _get_or_none(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            found: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether an aggregate has events, without reconstructing it (no exception path)."""
        return bool(self.process_recorder.select_events(aggregate_id, limit=1))

    def get_optional(self, aggregate_id: UUID, cls: type[A]) -> A | None:
        """The aggregate, or None when there is none of type ``cls`` with that id. Ids often
        come from clients (a public id, a token's part): one naming a record of another type
        is "not found" like any other, never an error."""
        try:
            found: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(found, cls):
            log.info("%s is a %s, not a %s", aggregate_id, type(found).__name__, cls.__name__)
            return None
        return found

    def is_reachable(self) -> bool:
        """Cheap store round trip for readiness probes."""
        self.process_recorder.max_notification_id()
        return True

    def _fire_recorded(self, events: Sequence[Any]) -> None:
        with self._listeners_lock:
            listeners = tuple(self._recorded_listeners)
        for listener in listeners:
            _quietly(listener, events)

    def _fire_saved(self) -> None:
        with self._listeners_lock:
            listeners: Sequence[Callable[[], None]] = tuple(self._saved_listeners)
        for listener in listeners:
            _quietly(listener)


def _is_plain(state: bytes) -> bool:
    """Whether a stored state is eventsourcing's JSON in clear (AES-GCM output never is)."""
    try:
        return isinstance(json.loads(state), dict)
    except ValueError:  # not UTF-8, or not JSON
        return False


def _quietly(listener: Callable[..., None], *args: Any) -> None:
    """Listeners run after the commit: one that fails must not make the write look failed."""
    try:
        listener(*args)
    except Exception:
        log.exception("listener failed after a committed write")
