"""Domain events of the registry -> published contract events (``contracts.registry_v1``).

The one place where internal events meet the wire. Key events travel as digests only.
One stored event may yield several contract events (a candidate's results in a deliberation
become one bloc-graded per line, one bloc-validated per bloc acquired, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from contracts import registry_v1 as v1
from contracts.referential import load_certification
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
        return [_out(issued, e.uai)]
    if isinstance(domain_event, ExamCenter.KeyRevoked):
        return [_out(contract(v1.ExamCenterKeyRevoked, exam_center=e.uai, key_id=e.key_id), e.uai)]
    if isinstance(domain_event, Candidate.Registered):
        return [_registered(e)]
    if isinstance(domain_event, Candidate.ResultsRecorded):
        graded = [
            _graded(e, line, deliberation_id=e.deliberation_id, deliberated_on=e.deliberated_on)
            for line in e.lines
        ]
        return graded + _changes(e, e.deliberated_on)
    if isinstance(domain_event, Candidate.VaeDecisionRecorded):
        recorded = contract(
            v1.VaeDecisionRecorded,
            decision_id=e.decision_id,
            candidate_number=e.candidate_number,
            certification=e.certification,
            decided_on=date.fromisoformat(e.decided_on),
            decision=e.decision,
            blocs=e.blocs,
            exam_center=e.exam_center,
            jury=contract(v1.Jury, **e.jury),
        )
        return [_out(recorded, e.candidate_number), *_changes(e, e.decided_on)]
    if isinstance(domain_event, Candidate.ResultCorrected):
        regraded = _graded(
            e,
            e.line,
            deliberation_id=e.line["deliberation_id"],
            deliberated_on=e.line["deliberated_on"],
            correction={"corrects": e.line["result_id"], "id": e.correction_id, "reason": e.reason},
        )
        return [regraded, *_changes(e, e.corrected_on)]
    return []


def _out(event: v1.RegistryEvent, subject: str) -> Outgoing:
    return Outgoing(event=event, event_type=event.event_type(), subject=subject)


def _registered(e: Any) -> Outgoing:
    return _out(
        contract(
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
        ),
        e.candidate_number,
    )


def _graded(
    e: Any,
    line: dict[str, Any],
    *,
    deliberation_id: str,
    deliberated_on: str,
    correction: dict[str, str] | None = None,
) -> Outgoing:
    mark = parse_mark(line["mark"])
    return _out(
        contract(
            v1.BlocGraded,
            result_id=line["result_id"],
            candidate_number=e.candidate_number,
            certification=e.certification,
            bloc=line["bloc"],
            session=line["session"],
            deliberation_id=deliberation_id,
            deliberated_on=date.fromisoformat(deliberated_on),
            exam_center=e.exam_center,
            mark=mark.kind,
            grade=None if mark.grade is None else format(mark.grade, "f"),
            modality=line["modality"],
            justification=line["justification"],
            corrects=correction["corrects"] if correction else None,
            correction_id=correction["id"] if correction else None,
            reason=correction["reason"] if correction else None,
        ),
        e.candidate_number,
    )


def _changes(e: Any, on: str) -> list[Outgoing]:
    """Withdrawals first, then acquisitions, then the diploma: the order a reader expects."""
    cert = load_certification(e.certification)
    out: list[Outgoing] = []
    day = date.fromisoformat(on[:10])
    for gone in e.withdrawn:
        out.append(
            _out(
                contract(
                    v1.BlocValidationWithdrawn,
                    validation_id=gone["validation_id"],
                    candidate_number=e.candidate_number,
                    certification=e.certification,
                    bloc=gone["bloc"],
                    withdrawn_on=day,
                    correction_id=getattr(e, "correction_id", ""),
                    corrects=gone["result_id"] or "",
                    reason=getattr(e, "reason", "") or REPLACED,
                    exam_center=e.exam_center,
                ),
                e.candidate_number,
            )
        )
    for new in e.validated:
        bloc = cert.bloc(new["bloc"])
        out.append(
            _out(
                contract(
                    v1.BlocValidated,
                    validation_id=new["validation_id"],
                    candidate_number=e.candidate_number,
                    certification=e.certification,
                    bloc=new["bloc"],
                    optional=bool(bloc and bloc.optional),
                    via=new["via"],
                    grade=new["grade"],
                    session=new["session"],
                    validated_on=date.fromisoformat(new["validated_on"][:10]),
                    source_id=new["source_id"],
                    exam_center=e.exam_center,
                    access_route=e.access_route,
                ),
                e.candidate_number,
            )
        )
    if e.award_withdrawn is not None:
        out.append(
            _out(
                contract(
                    v1.CertificationAwardWithdrawn,
                    award_id=e.award_withdrawn["award_id"],
                    candidate_number=e.candidate_number,
                    certification=e.certification,
                    withdrawn_on=day,
                    correction_id=getattr(e, "correction_id", ""),
                    reason=getattr(e, "reason", "") or REPLACED,
                    exam_center=e.exam_center,
                ),
                e.candidate_number,
            )
        )
    if e.award is not None:
        award = e.award
        out.append(
            _out(
                contract(
                    v1.CertificationAwarded,
                    award_id=award["award_id"],
                    candidate_number=e.candidate_number,
                    certification=e.certification,
                    via=award["via"],
                    session=award["session"],
                    awarded_on=date.fromisoformat(award["awarded_on"][:10]),
                    average=award["average"],
                    mention=award["mention"],
                    source_id=award["source_id"],
                    exam_center=e.exam_center,
                    access_route=e.access_route,
                ),
                e.candidate_number,
            )
        )
    return out
