"""One person across the scopes that number candidates, linked by INE.

Candidate numbers are scoped by the center that registers them, so the same person registered
by two centers is two candidates. Where the INE (the national student identifier) is given,
the registry links them: a ``Person`` per INE lists the (center, number) records that carry it.

An INE is only a claim made by a center: a record whose birth date differs from the first
one linked is not linked but kept as a conflict for an operator to look at, so a center
cannot attach itself to someone else's records by typing their INE. Nothing here is shown to
any center: a center never learns whether another registered the same person. The lists are
bounded (``MAX_RECORDS``, ``MAX_CONFLICTS``): a center claiming one INE over and over would
otherwise make every later registration with it slower, its own and other centers'.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.registry.domain import ids

log = logging.getLogger(__name__)
MAX_RECORDS = 50  # one person registered by 50 centers is already far beyond real life
MAX_CONFLICTS = 20  # beyond, further conflicting claims are only logged


class Person(Aggregate):
    @staticmethod
    def create_id(ine: str) -> UUID:
        return ids.person_id(ine)

    @event("Identified")
    def __init__(self, ine: str, birth_date: str) -> None:
        self.ine = ine.upper()
        self.birth_date = birth_date
        self.records: list[dict[str, str]] = []  # {exam_center, candidate_number, at}
        self.conflicts: list[dict[str, str]] = []

    def links(self, exam_center: str, candidate_number: str) -> bool:
        return any(
            r["exam_center"] == exam_center and r["candidate_number"] == candidate_number
            for r in (*self.records, *self.conflicts)
        )

    def claim(self, exam_center: str, candidate_number: str, birth_date: str, at: str) -> None:
        """A center registered a candidate with this INE: link it, or keep it apart."""
        if self.links(exam_center, candidate_number):
            return
        if birth_date == self.birth_date:
            if len(self.records) < MAX_RECORDS:
                self._linked(exam_center=exam_center, candidate_number=candidate_number, at=at)
            else:
                log.warning("INE links full: not linked", extra={"exam_center": exam_center})
        elif len(self.conflicts) < MAX_CONFLICTS:
            self._conflicting(exam_center=exam_center, candidate_number=candidate_number, at=at)
        else:
            log.warning("INE conflicts full: not recorded", extra={"exam_center": exam_center})

    @event("Linked")
    def _linked(self, exam_center: str, candidate_number: str, at: str) -> None:
        self.records.append(
            {"exam_center": exam_center, "candidate_number": candidate_number, "at": at}
        )

    @event("ConflictNoted")
    def _conflicting(self, exam_center: str, candidate_number: str, at: str) -> None:
        self.conflicts.append(
            {"exam_center": exam_center, "candidate_number": candidate_number, "at": at}
        )

    def view(self) -> dict[str, Any]:
        return {
            "ine": self.ine,
            "records": list(self.records),
            "conflicts": list(self.conflicts),
        }
