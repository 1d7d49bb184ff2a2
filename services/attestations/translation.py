"""Domain events of the attestations service -> published contract events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from contracts import attestations_v1 as v1
from contracts.referential import load_certification
from services.attestations.domain.aggregates import Attestation
from services.runtime.outbox import Outgoing, contract


def translator(verify_url: Callable[[str], str]) -> Callable[[object], Sequence[Outgoing]]:
    def translate(domain_event: object) -> Sequence[Outgoing]:
        e: Any = domain_event
        if isinstance(domain_event, Attestation.Issued):
            issued = contract(
                v1.AttestationIssued,
                attestation_id=e.public_id,
                kind=e.kind,
                code=e.code,
                title=e.title,
                certification=e.certification,
                certification_title=load_certification(e.certification).title,
                candidate_number=e.candidate_number,
                exam_center=e.exam_center,
                holder_given_names=e.holder["given_names"],
                holder_family_name=e.holder["family_name"],
                issued_at=datetime.fromisoformat(e.issued_at),
                verify_url=verify_url(e.public_id),
                source_id=e.source_id,
            )
            return [Outgoing(issued, issued.event_type(), e.candidate_number)]
        if isinstance(domain_event, Attestation.Revoked):
            certification = getattr(e, "certification", None)
            revoked = contract(
                v1.AttestationRevoked,
                attestation_id=e.public_id,
                kind=e.kind,
                code=e.code,
                title=getattr(e, "title", None),
                certification=certification,
                certification_title=load_certification(certification).title
                if certification
                else None,
                candidate_number=e.candidate_number,
                exam_center=e.exam_center,
                revoked_at=datetime.fromisoformat(e.at),
                reason=e.reason,
                verify_url=verify_url(e.public_id),
            )
            return [Outgoing(revoked, revoked.event_type(), e.candidate_number)]
        return []

    return translate
