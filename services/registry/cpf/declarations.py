"""Which awards to declare to the Caisse des Dépôts, and what it answered.

Awards are found by reading the registry's own event log (the candidates' decision events
only, by topic): no read model is kept for a command run a few times a month, at the cost of
one pass over those events per export. An award is selected by the day it was *recorded*
(UTC), not by its jury date, so a PV posted late still falls in the next export; an award in
two exports keeps its ``idTechnique`` (its award id), so the Caisse des Dépôts sees one passage.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from services.registry.cpf import flux
from services.registry.cpf.ack import Ack
from services.registry.domain.candidate import Candidate

PAGE = 1000
_TOPICS = [
    get_topic(cls)
    for cls in (Candidate.ResultsRecorded, Candidate.VaeDecisionRecorded, Candidate.ResultCorrected)
]


@dataclass(frozen=True)
class Incomplete:
    exam_center: str
    candidate_number: str
    id_technique: str
    missing: list[str]


@dataclass(frozen=True)
class Withdrawn:
    exam_center: str
    candidate_number: str
    id_technique: str
    withdrawn_on: str
    accepted_by_cdc: bool


@dataclass
class Selection:
    passages: list[flux.Passage] = field(default_factory=list)
    incomplete: list[Incomplete] = field(default_factory=list)
    withdrawn: list[Withdrawn] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "declared": [p.id_technique for p in self.passages],
            "incomplete": [i.__dict__ for i in self.incomplete],
            "withdrawn": [w.__dict__ for w in self.withdrawn],
        }


@dataclass(frozen=True)
class _Seen:
    candidate_id: UUID
    award: dict[str, Any]
    recorded_on: date


def _scan(app: Any) -> tuple[dict[str, _Seen], dict[str, _Seen]]:
    """(awards by id, withdrawals by award id) over the whole log."""
    awards: dict[str, _Seen] = {}
    withdrawn: dict[str, _Seen] = {}
    start: int | None = None
    while True:
        page = app.process_recorder.select_notifications(
            start=start, limit=PAGE, topics=_TOPICS, inclusive_of_start=start is None
        )
        for notification in page:
            e: Any = app.mapper.to_domain_event(notification)
            on = e.timestamp.astimezone(UTC).date()
            if e.award_withdrawn is not None:
                gone = e.award_withdrawn
                withdrawn[gone["award_id"]] = _Seen(e.originator_id, gone, on)
            if e.award is not None:
                awards[e.award["award_id"]] = _Seen(e.originator_id, e.award, on)
        if len(page) < PAGE:
            return awards, withdrawn
        start = page[-1].id


def select(app: Any, since: date) -> Selection:
    awards, withdrawn = _scan(app)
    candidates: dict[UUID, Candidate] = {}

    def candidate(candidate_id: UUID) -> Candidate:
        if candidate_id not in candidates:
            candidates[candidate_id] = app.repository.get(candidate_id)
        return candidates[candidate_id]

    out = Selection()
    for award_id, seen in awards.items():
        if award_id in withdrawn or seen.recorded_on < since:
            continue
        c = candidate(seen.candidate_id)
        holder = flux.Holder(
            birth_name=c.birth_name,
            usage_name=c.usage_name,
            given_names=list(c.given_names),
            birth_date=c.birth_date,
            **c.cpf_details(),
        )
        missing = flux.missing_fields(holder)
        if missing:
            out.incomplete.append(Incomplete(c.exam_center, c.candidate_number, award_id, missing))
            continue
        out.passages.append(
            flux.Passage(
                id_technique=award_id,
                certification=c.certification,
                awarded_on=seen.award["awarded_on"],
                via=seen.award["via"],
                mention=seen.award["mention"],
                access_route=c.access_route,
                holder=holder,
            )
        )
    for award_id, seen in withdrawn.items():
        if seen.recorded_on < since:
            continue
        c = candidate(seen.candidate_id)
        accepted = any(
            o["id_technique"] == award_id and o["accepted"] for o in getattr(c, "cpf_outcomes", [])
        )
        out.withdrawn.append(
            Withdrawn(c.exam_center, c.candidate_number, award_id, str(seen.recorded_on), accepted)
        )
    return out


def export(
    app: Any, since: date, *, client_id: str, contract_id: str
) -> tuple[bytes | None, Selection]:
    """(the flux, or None when there is nothing to declare; what was selected and left out)."""
    selection = select(app, since)
    if not selection.passages:
        return None, selection
    at = datetime.now(UTC)
    flux_id = f"certibloc-{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    xml = flux.build(
        selection.passages, flux_id=flux_id, client_id=client_id, contract_id=contract_id, at=at
    )
    return xml, selection


@dataclass
class AckResult:
    recorded: int = 0
    already: int = 0
    unknown: list[str] = field(default_factory=list)


def record_ack(app: Any, ack: Ack) -> AckResult:
    """Record each outcome on its candidate, once (a second import changes nothing)."""
    awards, withdrawn = _scan(app)
    result = AckResult()
    loaded: dict[UUID, Candidate] = {}
    at = datetime.now(UTC).isoformat()
    for outcome in ack.outcomes:
        seen = awards.get(outcome.id_technique) or withdrawn.get(outcome.id_technique)
        if seen is None:
            result.unknown.append(outcome.id_technique)
            continue
        if seen.candidate_id not in loaded:
            loaded[seen.candidate_id] = app.repository.get(seen.candidate_id)
        c = loaded[seen.candidate_id]
        if c.record_cpf_outcome(
            id_technique=outcome.id_technique,
            accepted=outcome.accepted,
            message=outcome.message,
            flux_id=ack.flux_id,
            treatment_id=ack.treatment_id,
            recorded_at=at,
        ):
            result.recorded += 1
        else:
            result.already += 1
    batch = [c for c in loaded.values() if c.pending_events]
    for i in range(0, len(batch), 100):  # one transaction per hundred candidates
        app.save(*batch[i : i + 100])
    return result


def status(c: Candidate) -> dict[str, Any]:
    """What the candidate's record shows: the current award's declaration status and every
    acknowledgement recorded, oldest first."""
    outcomes = [
        {
            "id_technique": o["id_technique"],
            "status": "acceptée" if o["accepted"] else "rejetée",
            "message": o["message"],
            "flux_id": o["flux_id"],
            "treatment_id": o["treatment_id"],
            "recorded_at": o["recorded_at"],
        }
        for o in getattr(c, "cpf_outcomes", [])
    ]
    current = c.award.award_id if c.award is not None else None
    answers = [o for o in outcomes if o["id_technique"] == current]
    return {
        "id_technique": current,
        "status": None
        if current is None
        else answers[-1]["status"]
        if answers
        else "non acquittée",
        "missing_fields": None
        if current is None
        else flux.missing_fields(
            flux.Holder(
                c.birth_name, c.usage_name, list(c.given_names), c.birth_date, **c.cpf_details()
            )
        ),
        "acknowledgements": outcomes,
    }
