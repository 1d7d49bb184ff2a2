"""Exam-center authentication for the services other than the registry.

The registry publishes each API key's SHA-256 digest (exam-center-key-issued / -revoked); a
service keeps them in a ``CenterKeys`` aggregate per center and checks a presented key by
hashing it. No service reads the registry's store.
"""

from __future__ import annotations

import hmac
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from contracts import api_keys
from contracts.envelope import CloudEvent
from contracts.registry_v1 import ExamCenterKeyIssued, ExamCenterKeyRevoked
from services.runtime.messages import HandlerTable, Unit
from services.runtime.store import ServiceApplication

NAMESPACE = UUID("5f3b8d3e-1c4a-4f0e-9d1b-7a2c6e9f4b21")


class CenterKeys(Aggregate):
    """An exam center's active API key digests, as published by the registry."""

    @staticmethod
    def create_id(exam_center: str) -> UUID:
        return uuid5(NAMESPACE, f"center-keys:{exam_center}")

    @event("Known")
    def __init__(self, exam_center: str) -> None:
        self.exam_center = exam_center
        self.digests: dict[str, str] = {}  # key_id -> digest

    @event("KeyAdded")
    def add(self, key_id: str, digest: str) -> None:
        self.digests[key_id] = digest

    @event("KeyRemoved")
    def remove(self, key_id: str) -> None:
        self.digests.pop(key_id, None)


def handle_key_events(app: ServiceApplication, table: HandlerTable) -> HandlerTable:
    """Add the handlers of the registry's key events to a consumer's table."""

    def keys_of(center: str, unit: Unit) -> CenterKeys:
        keys = app.get_in(unit, CenterKeys.create_id(center), CenterKeys)
        if keys is None:
            keys = CenterKeys(exam_center=center)
        app.stage(unit, keys)
        return keys

    def issued(data: ExamCenterKeyIssued, _: CloudEvent, unit: Unit) -> None:
        keys_of(data.exam_center, unit).add(key_id=data.key_id, digest=data.digest)

    def revoked(data: ExamCenterKeyRevoked, _: CloudEvent, unit: Unit) -> None:
        keys_of(data.exam_center, unit).remove(key_id=data.key_id)

    return table.on(ExamCenterKeyIssued, issued).on(ExamCenterKeyRevoked, revoked)


def authenticate(app: ServiceApplication, key: str) -> str | None:
    """The UAI of the exam center owning this active API key, or None."""
    uai = api_keys.uai_of(key)
    if uai is None:
        return None
    keys = app.get_optional(CenterKeys.create_id(uai), CenterKeys)
    if keys is None:
        return None
    presented = api_keys.digest(key)
    matched = False
    for known in keys.digests.values():
        matched |= hmac.compare_digest(known, presented)  # compare all: no timing hint
    return uai if matched else None
