"""Domain events of the registry -> published contract events (``contracts.registry_v1``).

The one place where internal events meet the wire. One stored event of a candidate's decision
(its results in a PV, a VAE decision, a correction) is one ``decision-recorded``: the unit on
the wire is the candidate's decision. Key events travel as digests only. Every event about a
candidate goes to the partition of its (center, number); a center's key events to the
center's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from contracts import registry_v1 as v1
from contracts.referential import load_certification
from contracts.subjects import candidate_key
from services.registry.domain.candidate import Candidate
from services.registry.domain.exam_center import ExamCenter
from services.registry.domain.marks import parse_mark
from services.runtime.outbox import Outgoing, contract

REPLACED = "décision du jury remplacée par une nouvelle délibération"


def translate(domain_event: object) -> Sequence[Outgoing]:
    # Event attributes are made by eventsourcing at run time: read them untyped.
    e: Any = domain_event
    if isinstance(domain_event, ExamCenter.KeyIssued):
        issued = contract(
            v1.ExamCenterKeyIssued,
            exam_center=e.uai,
            key_id=e.key_id,
            digest=e.digest,
            issued_at=datetime.fromisoformat(e.issued_at),
        )
        return [_out(issued, e.uai, e.uai)]
    if isinstance(domain_event, ExamCenter.KeyRevoked):
        revoked = contract(v1.ExamCenterKeyRevoked, exam_center=e.uai, key_id=e.key_id)
        return [_out(revoked, e.uai, e.uai)]
    if isinstance(domain_event, Candidate.Registered):
        return [_candidate(e, _registered(e))]
    if isinstance(domain_event, Candidate.ResultsRecorded):
        decision = _decision(
            e,
            decision_id=e.deliberation_id,
            decision="deliberation",
            route="exam",
            decided_on=e.deliberated_on,
            session=e.session,
            graded=[_graded(line) for line in e.lines],
        )
        return [_candidate(e, decision)]
    if isinstance(domain_event, Candidate.VaeDecisionRecorded):
        decision = _decision(
            e,
            decision_id=e.decision_id,
            decision="vae",
            route="vae",
            decided_on=e.decided_on,
            session=None,
            vae_decision=e.decision,
        )
        return [_candidate(e, decision)]
    if isinstance(domain_event, Candidate.ResultCorrected):
        line = e.line
        decision = _decision(
            e,
            decision_id=e.correction_id,
            decision="correction",
            route="exam",
            decided_on=line["deliberated_on"],
            session=line["session"],
            graded=[_graded(line, corrects=line["result_id"])],
            corrects=line["deliberation_id"],
            corrected_on=date.fromisoformat(e.corrected_on[:10]),
            reason=e.reason,
        )
        return [_candidate(e, decision)]
    return []


def _out(event: v1.RegistryEvent, subject: str, key: str) -> Outgoing:
    return Outgoing(event=event, event_type=event.event_type(), subject=subject, key=key)


def _candidate(e: Any, event: v1.RegistryEvent) -> Outgoing:
    return _out(event, e.candidate_number, candidate_key(e.exam_center, e.candidate_number))


def _registered(e: Any) -> v1.CandidateRegistered:
    return contract(
        v1.CandidateRegistered,
        candidate_number=e.candidate_number,
        certification=e.certification,
        exam_center=e.exam_center,
        birth_name=e.birth_name,
        usage_name=e.usage_name,
        given_names=e.given_names,
        email=e.email,
        access_route=e.access_route,
        candidate_group=e.candidate_group,
        ine=e.ine,
        registered_at=e.timestamp,
        # Registrations recorded before 2026-12 lack them.
        show_exam_center=getattr(e, "show_exam_center", False),
        exam_center_name=getattr(e, "exam_center_name", None),
        preferred_language=getattr(e, "preferred_language", "fr"),  # since 2027-01
    )


def _graded(line: dict[str, Any], corrects: str | None = None) -> v1.GradedBloc:
    mark = parse_mark(line["mark"])
    return contract(
        v1.GradedBloc,
        result_id=line["result_id"],
        bloc=line["bloc"],
        session=line["session"],
        mark=mark.kind,
        grade=None if mark.grade is None else format(mark.grade, "f"),
        modality=line["modality"],
        justification=line["justification"],
        corrects=corrects,
    )


def _decision(
    e: Any,
    *,
    decision_id: str,
    decision: str,
    route: str,
    decided_on: str,
    session: str | None,
    graded: Sequence[v1.GradedBloc] = (),
    **extra: Any,
) -> v1.DecisionRecorded:
    """Everything ``e`` changed for its candidate: withdrawals, acquisitions, the award."""
    cert = load_certification(e.certification)
    validated = []
    for new in e.validated:
        bloc = cert.bloc(new["bloc"])
        validated.append(
            contract(
                v1.ValidatedBloc,
                validation_id=new["validation_id"],
                bloc=new["bloc"],
                optional=bool(bloc and bloc.optional),
                via=new["via"],
                grade=new["grade"],
                session=new["session"],
                validated_on=date.fromisoformat(new["validated_on"][:10]),
                source_id=new["source_id"],
                carried_over=new["via"] == "grade" and new["session"] != session,
            )
        )
    withdrawn = [
        contract(
            v1.WithdrawnBloc,
            validation_id=gone["validation_id"],
            bloc=gone["bloc"],
            corrects=gone.get("result_id"),
        )
        for gone in e.withdrawn
    ]
    award = None
    if e.award is not None:
        a = e.award
        award = contract(
            v1.AwardDecided,
            award_id=a["award_id"],
            via=a["via"],
            session=a["session"],
            awarded_on=date.fromisoformat(a["awarded_on"][:10]),
            average=a["average"],
            mention=a["mention"],
            source_id=a["source_id"],
        )
    if (withdrawn or e.award_withdrawn is not None) and not extra.get("reason"):
        extra["reason"] = REPLACED  # a later deliberation replaced what an earlier decided
    return contract(
        v1.DecisionRecorded,
        decision_id=decision_id,
        decision=decision,
        candidate_number=e.candidate_number,
        exam_center=e.exam_center,
        certification=e.certification,
        access_route=e.access_route,
        route=route,
        decided_on=date.fromisoformat(decided_on[:10]),
        session=session,
        graded=list(graded),
        validated=validated,
        withdrawn=withdrawn,
        award=award,
        award_withdrawn=e.award_withdrawn["award_id"] if e.award_withdrawn else None,
        **extra,
    )
