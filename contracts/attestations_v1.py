"""Version 1 of the events the attestations service publishes
(``fr.certibloc.attestations.<event>.v1``)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from contracts.events import ContractEvent


class AttestationEvent(ContractEvent):
    """Base of the attestations service's published events."""

    SERVICE: ClassVar[str] = "attestations"


class AttestationIssued(AttestationEvent):
    """A signed attestation (verifiable credential) was issued to a candidate."""

    NAME: ClassVar[str] = "attestation-issued"
    attestation_id: str = Field(description="Unguessable public id (>= 128 random bits).")
    kind: Literal["bloc", "certification"]
    code: str = Field(description="RNCP code of the bloc or of the certification.")
    title: str
    certification: str
    candidate_number: str
    exam_center: str
    holder_given_names: list[str]
    holder_family_name: str
    issued_at: datetime
    verify_url: str
    source_id: str = Field(description="The registry's validation_id or award_id.")


class AttestationRevoked(AttestationEvent):
    """An attestation was revoked (e.g. a correction took the bloc away)."""

    NAME: ClassVar[str] = "attestation-revoked"
    attestation_id: str
    kind: Literal["bloc", "certification"]
    code: str
    candidate_number: str
    exam_center: str
    revoked_at: datetime
    reason: str
    verify_url: str


EVENTS: tuple[type[AttestationEvent], ...] = (AttestationIssued, AttestationRevoked)
