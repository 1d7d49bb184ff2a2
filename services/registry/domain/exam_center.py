"""Exam centers and their API keys (stored as SHA-256 digests, shown once)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.api_keys import digest, key_id, new_key
from services.registry.domain import ids
from services.registry.domain.errors import ConflictingState, UnknownEntity


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    digest: str
    issued_at: str
    revoked: bool = False


class ExamCenter(Aggregate):
    KeyIssued: ClassVar[type[Aggregate.Event]]
    KeyRevoked: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(uai: str) -> UUID:
        return ids.exam_center_id(uai)

    @event("Added")
    def __init__(self, uai: str, name: str) -> None:
        self.uai = uai
        self.name = name
        self.keys: dict[str, KeyInfo] = {}

    def issue_key(self, issued_at: str) -> str:
        """Return a new key; only its digest is recorded."""
        key = new_key(self.uai)
        key_digest = digest(key)
        self._key_issued(
            uai=self.uai, key_id=key_id(key_digest), digest=key_digest, issued_at=issued_at
        )
        return key

    @event("KeyIssued")
    def _key_issued(self, uai: str, key_id: str, digest: str, issued_at: str) -> None:
        self.keys[key_id] = KeyInfo(key_id, digest, issued_at)

    def revoke_key(self, key_id: str) -> None:
        info = self.keys.get(key_id)
        if info is None:
            raise UnknownEntity(f"Aucune clé {key_id} pour le centre {self.uai}.")
        if info.revoked:
            raise ConflictingState(f"La clé {key_id} est déjà révoquée.")
        self._key_revoked(uai=self.uai, key_id=key_id)

    @event("KeyRevoked")
    def _key_revoked(self, uai: str, key_id: str) -> None:
        info = self.keys[key_id]
        self.keys[key_id] = KeyInfo(info.key_id, info.digest, info.issued_at, revoked=True)

    def accepts(self, key: str) -> bool:
        presented = digest(key)
        matched = False
        for info in self.keys.values():
            # Compare with every key so timing says nothing about which one matched.
            if hmac.compare_digest(info.digest, presented) and not info.revoked:
                matched = True
        return matched
