"""Version 1 of the events the attestations service publishes
(``fr.certibloc.attestations.<event>.v1``).

Strings are bounded and clean as in ``contracts.text``. Added in 2026-12 as optional fields
(a compatible change; events published before lack them): ``certification_title`` on
attestation-issued, ``title``, ``certification`` and ``certification_title`` on
attestation-revoked.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from contracts.events import ContractEvent
from contracts.text import GIVEN_NAMES_MAX, Code, FreeText, Label, PersonName, Ref, Url


class AttestationEvent(ContractEvent):
    """Base of the attestations service's published events."""

    SERVICE: ClassVar[str] = "attestations"


class AttestationIssued(AttestationEvent):
    """A signed attestation (verifiable credential) was issued to a candidate."""

    NAME: ClassVar[str] = "attestation-issued"
    attestation_id: Ref = Field(description="Unguessable public id (>= 128 random bits).")
    kind: Literal["bloc", "certification"]
    code: Code = Field(description="RNCP code of the bloc or of the certification.")
    title: Label = Field(description="Title of the bloc or of the certification.")
    certification: Code = Field(description="RNCP code of the certification.")
    certification_title: Label | None = Field(
        default=None, description="Title of the certification (absent before 2026-12)."
    )
    candidate_number: Code
    exam_center: Code
    holder_given_names: list[PersonName] = Field(min_length=1, max_length=GIVEN_NAMES_MAX)
    holder_family_name: PersonName
    issued_at: datetime
    verify_url: Url
    source_id: Ref = Field(description="The registry's validation_id or award_id.")


class AttestationRevoked(AttestationEvent):
    """An attestation was revoked (e.g. a correction took the bloc away)."""

    NAME: ClassVar[str] = "attestation-revoked"
    attestation_id: Ref
    kind: Literal["bloc", "certification"]
    code: Code
    title: Label | None = Field(default=None, description="Title of the bloc or certification.")
    certification: Code | None = Field(default=None, description="RNCP code of the certification.")
    certification_title: Label | None = None
    candidate_number: Code
    exam_center: Code
    revoked_at: datetime
    reason: FreeText
    verify_url: Url


EVENTS: tuple[type[AttestationEvent], ...] = (AttestationIssued, AttestationRevoked)
