"""A jury deliberation (procès-verbal): recorded once, all lines or none."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event


class Deliberation(Aggregate):
    @staticmethod
    def create_id(deliberation_id: str) -> UUID:
        # Chosen by the application: derived from the Idempotency-Key when there is one.
        return UUID(deliberation_id)

    @event("Recorded")
    def __init__(
        self,
        deliberation_id: str,
        exam_center: str,
        certification: str,
        session: str,
        deliberated_on: str,
        jury: dict[str, Any],
        private_teacher_missing: bool,
        idempotency_key: str | None,
        request_digest: str,
        line_count: int,
        validated_count: int,
        candidate_numbers: list[str],
    ) -> None:
        self.exam_center = exam_center
        self.certification = certification
        self.session = session
        self.deliberated_on = deliberated_on
        self.jury = jury
        self.private_teacher_missing = private_teacher_missing
        self.idempotency_key = idempotency_key
        self.request_digest = request_digest
        self.line_count = line_count
        self.validated_count = validated_count
        self.candidate_numbers = candidate_numbers

    def receipt(self) -> dict[str, Any]:
        return {
            "deliberation_id": str(self.id),
            "lines": self.line_count,
            "validated": self.validated_count,
        }
