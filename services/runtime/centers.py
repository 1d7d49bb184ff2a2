"""Exam-center authentication for the services other than the registry.

The registry publishes each API key's SHA-256 digest (exam-center-key-issued / -revoked); a
service keeps them in a ``CenterKeys`` aggregate per center and checks a presented key by
hashing it. No service reads the registry's store.
"""

from __future__ import annotations

import hmac
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate, event

from contracts import api_keys
from contracts.envelope import CloudEvent
from contracts.subjects import event_type
from services.runtime.store import ServiceApplication

NAMESPACE = UUID("5f3b8d3e-1c4a-4f0e-9d1b-7a2c6e9f4b21")
KEY_ISSUED = event_type("registry", "exam-center-key-issued", 1)
KEY_REVOKED = event_type("registry", "exam-center-key-revoked", 1)


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


def apply_key_event(
    app: ServiceApplication, event: CloudEvent, unit: ProcessingEvent[UUID]
) -> bool:
    """Record a key event if ``event`` is one; True when it was."""
    if event.type not in (KEY_ISSUED, KEY_REVOKED):
        return False
    data: dict[str, Any] = event.data
    center = data["exam_center"]
    keys = app.get_in(unit, CenterKeys.create_id(center), CenterKeys)
    if keys is None:
        keys = CenterKeys(exam_center=center)
    if event.type == KEY_ISSUED:
        keys.add(key_id=data["key_id"], digest=data["digest"])
    else:
        keys.remove(key_id=data["key_id"])
    app.stage(unit, keys)
    return True


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
