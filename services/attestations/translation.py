"""Domain events of the attestations service -> published contract events.

One ``Holder.DecisionAttested`` (what one registry decision issued and revoked for one
candidate) is one ``attestations-recorded``, in the candidate's partition. The attestations'
own events (issued, revoked, superseded) are the service's records, not published.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from contracts import attestations_v1 as v1
from contracts.referential import load_certification
from contracts.subjects import candidate_key
from services.attestations.domain.aggregates import Holder
from services.runtime.outbox import Outgoing, contract

Listed = TypeVar("Listed", v1.IssuedAttestation, v1.RevokedAttestation, v1.HeldAttestation)


def translator(verify_url: Callable[[str], str]) -> Callable[[object], Sequence[Outgoing]]:
    def translate(domain_event: object) -> Sequence[Outgoing]:
        if isinstance(domain_event, Holder.LinksRevoked):
            return _links_revoked(domain_event, verify_url)
        if not isinstance(domain_event, Holder.DecisionAttested):
            return []
        e: Any = domain_event
        certification = load_certification(e.certification)
        recorded = contract(
            v1.AttestationsRecorded,
            decision_id=e.decision_id,
            decision=e.decision,
            decided_on=date.fromisoformat(e.decided_on),
            candidate_number=e.candidate_number,
            exam_center=e.exam_center,
            certification=certification.code,
            certification_title=certification.title,
            holder_given_names=e.given_names,
            holder_family_name=e.family_name,
            issued=[
                _about(
                    v1.IssuedAttestation,
                    a,
                    verify_url,
                    source_id=a["source_id"],
                    replaces=a.get("replaces"),
                    route=a.get("route"),  # recorded since 2027-01
                    session=a.get("session"),
                    grade_session=a.get("grade_session"),
                )
                for a in e.issued
            ],
            revoked=[
                _about(v1.RevokedAttestation, a, verify_url, reason=a["reason"]) for a in e.revoked
            ],
            recorded_at=datetime.fromisoformat(e.at),
            links_epoch=getattr(e, "links_epoch", 0),
            preferred_language=getattr(e, "preferred_language", "fr"),
        )
        key = candidate_key(e.exam_center, e.candidate_number)
        return [Outgoing(recorded, recorded.event_type(), e.candidate_number, key)]

    return translate


def _about(
    model: type[Listed], a: dict[str, Any], verify_url: Callable[[str], str], **more: Any
) -> Listed:
    """An attestation as a published event lists it, from what the holder's event recorded."""
    return contract(
        model,
        attestation_id=a["public_id"],
        kind=a["kind"],
        code=a["code"],
        title=a["title"],
        verify_url=verify_url(a["public_id"]),
        **more,
    )


def _links_revoked(e: Any, verify_url: Callable[[str], str]) -> Sequence[Outgoing]:
    certification = load_certification(e.certification)
    revoked = contract(
        v1.DownloadLinksRevoked,
        candidate_number=e.candidate_number,
        exam_center=e.exam_center,
        certification=certification.code,
        certification_title=certification.title,
        links_epoch=e.epoch,
        revoked_at=datetime.fromisoformat(e.at),
        send_new_links=e.send_new_links,
        attestations=[_about(v1.HeldAttestation, a, verify_url) for a in e.valid],
        preferred_language=getattr(e, "preferred_language", "fr"),
    )
    key = candidate_key(e.exam_center, e.candidate_number)
    return [Outgoing(revoked, revoked.event_type(), e.candidate_number, key)]
