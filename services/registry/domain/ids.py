"""Deterministic ids: the same fact always gets the same id, so retries never duplicate."""

from __future__ import annotations

from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c0a52-3a4e-4b8e-9b49-2d6a2f6f0c11")


def candidate_id(exam_center: str, candidate_number: str) -> UUID:
    """A candidate is known by the center that registered it and its number there: numbers
    are assigned by each academy's exam office, not nationally (see ``Candidate``)."""
    return uuid5(NAMESPACE, f"candidate:{exam_center}:{candidate_number}")


def legacy_candidate_id(candidate_number: str) -> UUID:
    """How candidates were keyed before 2026-12 (by number alone, one center per number)."""
    return uuid5(NAMESPACE, f"candidate:{candidate_number}")


def person_id(ine: str) -> UUID:
    return uuid5(NAMESPACE, f"person:ine:{ine.upper()}")


def request_id(exam_center: str, route: str, idempotency_key: str) -> UUID:
    return uuid5(NAMESPACE, f"request:{exam_center}:{route}:{idempotency_key}")


def exam_center_id(uai: str) -> UUID:
    return uuid5(NAMESPACE, f"exam-center:{uai.upper()}")


def deliberation_id(exam_center: str, idempotency_key: str) -> UUID:
    return uuid5(NAMESPACE, f"deliberation:{exam_center}:{idempotency_key}")


def result_id(deliberation: str, candidate_number: str, bloc: str) -> str:
    return str(uuid5(NAMESPACE, f"result:{deliberation}:{candidate_number}:{bloc}"))


def validation_id(candidate_number: str, bloc: str, source_id: str) -> str:
    return str(uuid5(NAMESPACE, f"validation:{candidate_number}:{bloc}:{source_id}"))


def award_id(candidate_number: str, source_id: str) -> str:
    return str(uuid5(NAMESPACE, f"award:{candidate_number}:{source_id}"))
