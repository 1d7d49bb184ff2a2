"""What an ``Idempotency-Key`` answered: the same key and body again get the first answer and
record nothing new; the same key with another body is a conflict.

A PV's deliberation is its own record of this (``Deliberation``); VAE decisions and
corrections change a candidate, so their first answer is kept here, saved in the same
transaction as the candidate it changed.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.registry.domain import ids
from services.registry.domain.errors import ConflictingState


class IdempotentRequest(Aggregate):
    @staticmethod
    def create_id(exam_center: str, route: str, idempotency_key: str) -> UUID:
        return ids.request_id(exam_center, route, idempotency_key)

    @event("Answered")
    def __init__(
        self,
        exam_center: str,
        route: str,
        idempotency_key: str,
        digest: str,
        answer: dict[str, Any],
    ) -> None:
        self.exam_center = exam_center
        self.route = route
        self.idempotency_key = idempotency_key
        self.digest = digest
        self.answer = answer

    def replay(self, digest: str) -> dict[str, Any]:
        """The first answer, when ``digest`` is the first request's."""
        if digest != self.digest:
            raise ConflictingState(
                "Cette clé d'idempotence a déjà servi pour une autre demande ; "
                "utilisez une nouvelle clé."
            )
        return dict(self.answer)
