"""Version 1 of the events the attestations service publishes
(``fr.certibloc.attestations.<event>.v1``).

Published (``EVENTS``): one ``attestations-recorded`` per candidate and registry decision,
listing every attestation that decision issued or revoked; one ``download-links-revoked`` when
a candidate's personal links are revoked. Retired (``RETIRED``; not
published since 2026-12, kept for reading streams written before): ``attestation-issued`` and
``attestation-revoked``, one message per attestation — the unit of work is the decision.

Strings are bounded and clean as in ``contracts.text``. Added in 2026-12 as optional fields
(a compatible change; events published before lack them): ``certification_title`` on
attestation-issued, ``title``, ``certification`` and ``certification_title`` on
attestation-revoked; ``links_epoch`` on attestations-recorded.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import ContractEvent
from contracts.text import (
    GIVEN_NAMES_MAX,
    LANGUAGE_DESCRIPTION,
    Code,
    FreeText,
    Label,
    Language,
    PersonName,
    Ref,
    Url,
)


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


ATTESTATIONS_MAX = 32  # what one decision may issue or revoke: 15 blocs and the diploma
HELD_MAX = 256  # attestations in force for one candidate (superseded ones excluded)
LINKS_EPOCH_MAX = 1_000_000


Session = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]  # "2026-06"


class IssuedAttestation(BaseModel):
    """An attestation a decision issued."""

    model_config = ConfigDict(frozen=True)
    attestation_id: Ref = Field(description="Unguessable public id (>= 128 random bits).")
    kind: Literal["bloc", "certification"]
    code: Code = Field(description="RNCP code of the bloc or of the certification.")
    title: Label
    verify_url: Url
    source_id: Ref = Field(description="The registry's validation_id or award_id.")
    replaces: Ref | None = Field(
        default=None, description="The revoked attestation of the same bloc it supersedes."
    )
    # Added in 2027-01 (absent before): how it was acquired, for the candidate's e-mail.
    route: Literal["exam", "vae", "carried_over"] | None = Field(
        default=None, description="By exam, by VAE, or by a grade carried over."
    )
    session: Session | None = Field(default=None, description="The session (none for a VAE).")
    grade_session: Session | None = Field(
        default=None, description="The earlier session of a carried-over grade."
    )


class RevokedAttestation(BaseModel):
    """An attestation a decision revoked."""

    model_config = ConfigDict(frozen=True)
    attestation_id: Ref
    kind: Literal["bloc", "certification"]
    code: Code
    title: Label
    verify_url: Url
    reason: FreeText


class AttestationsRecorded(AttestationEvent):
    """What one registry decision changed in a candidate's attestations: those it issued and
    those it revoked (either list may be empty, not both)."""

    NAME: ClassVar[str] = "attestations-recorded"
    decision_id: Ref = Field(description="The registry's decision (deliberation, VAE, correction).")
    decision: Literal["deliberation", "vae", "correction"]
    decided_on: date = Field(description="Date of the jury's decision.")
    candidate_number: Code
    exam_center: Code
    certification: Code
    certification_title: Label
    holder_given_names: list[PersonName] = Field(min_length=1, max_length=GIVEN_NAMES_MAX)
    holder_family_name: PersonName
    issued: list[IssuedAttestation] = Field(default_factory=list, max_length=ATTESTATIONS_MAX)
    revoked: list[RevokedAttestation] = Field(default_factory=list, max_length=ATTESTATIONS_MAX)
    recorded_at: datetime
    links_epoch: int = Field(
        default=0,
        ge=0,
        le=LINKS_EPOCH_MAX,
        description="The candidate's personal-links epoch: links minted for it open the "
        "issued attestations (absent before 2026-12: 0).",
    )
    preferred_language: Language = Field(default="fr", description=LANGUAGE_DESCRIPTION)


class HeldAttestation(BaseModel):
    """An attestation in force, as a new personal link names it."""

    model_config = ConfigDict(frozen=True)
    attestation_id: Ref
    kind: Literal["bloc", "certification"]
    code: Code
    title: Label
    verify_url: Url


class DownloadLinksRevoked(AttestationEvent):
    """Every personal download link sent to a candidate so far stopped working (asked by their
    exam center or an operator). With ``send_new_links``, the candidate is to get an e-mail
    with new links, for the ``links_epoch`` given, to the attestations listed."""

    NAME: ClassVar[str] = "download-links-revoked"
    candidate_number: Code
    exam_center: Code
    certification: Code
    certification_title: Label
    links_epoch: int = Field(ge=1, le=LINKS_EPOCH_MAX)
    revoked_at: datetime
    send_new_links: bool
    attestations: list[HeldAttestation] = Field(
        default_factory=list, max_length=HELD_MAX, description="In force (with new links only)."
    )
    preferred_language: Language = Field(default="fr", description=LANGUAGE_DESCRIPTION)


EVENTS: tuple[type[AttestationEvent], ...] = (AttestationsRecorded, DownloadLinksRevoked)
RETIRED: tuple[type[AttestationEvent], ...] = (AttestationIssued, AttestationRevoked)
