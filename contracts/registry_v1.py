"""Version 1 of the events the registry publishes (``fr.certibloc.registry.<event>.v1``).

A compatible change adds optional fields; a breaking change is a new module and a new type,
published beside this one for a while. Grades and averages are decimal strings ("12.5"):
never floats, so nothing is rounded on the way.

Every string is bounded and clean (``contracts.text``): the registry refuses at its API what
would not fit, and consumers dead-letter an event that does not. (Those bounds were added to
v1 in 2026-12 without a new type: the registry never accepted longer values since, and a
consumer refusing an older, longer one sends it to its dead-letter stream, never drops it.)

What the registry publishes (``EVENTS``): a candidate's registration; for each candidate in
each decision (a PV, a VAE decision, a correction), one ``decision-recorded`` carrying
everything that decision changed for that candidate; the exam centers' key digests.

Retired (``RETIRED``; not published since 2026-12, kept for reading streams written before):
the per-bloc events (``bloc-graded``, ``bloc-validated``, ``bloc-validation-withdrawn``,
``certification-awarded``, ``certification-award-withdrawn``, ``vae-decision-recorded``). The
unit of work is the candidate's decision, not the bloc: a 10,000-line PV was ~21,000
messages, fetched and parsed by every consumer, for ~1,000 decisions. Their only consumers
were this project's services, which consume ``decision-recorded`` now; a stream written
before the change is drained before the upgrade (deploy/README.md).
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
    Email,
    FreeText,
    Label,
    Language,
    PersonName,
    Ref,
)

DecimalString = str
DECIMAL_PATTERN = r"^(20(\.0{1,2})?|1?[0-9](\.[0-9]{1,2})?)$"
AccessRoute = Literal[
    "formation_initiale",
    "apprentissage",
    "formation_continue",
    "contrat_professionnalisation",
    "candidature_individuelle",
    "vae",
]
Modality = Literal[
    "ccf", "ponctuel_ecrit", "ponctuel_oral", "ponctuel_pratique", "ponctuel_oral_pratique"
]
JuryRole = Literal["teacher_public", "teacher_private", "employer", "employee"]
JURY_MEMBERS_MAX = 30  # a BAC PRO jury sits a handful; 30 leaves room for the largest
BLOCS_MAX = 30  # blocs a decision may name (RNCP40705 has 15)
Session = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]


class RegistryEvent(ContractEvent):
    """Base of the registry's published events."""

    SERVICE: ClassVar[str] = "registry"


class JuryMember(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: PersonName
    role: JuryRole
    present: bool


class Jury(BaseModel):
    model_config = ConfigDict(frozen=True)
    members: list[JuryMember] = Field(min_length=1, max_length=JURY_MEMBERS_MAX)
    absence_exception: bool = False


class CandidateRegistered(RegistryEvent):
    """A candidate was registered for a certification by an exam center.

    A candidate is identified by ``(exam_center, candidate_number)``: numbers are assigned by
    each academy's exam office, not nationally, so two centers may use the same number for two
    people."""

    NAME: ClassVar[str] = "candidate-registered"
    candidate_number: Code
    certification: Code
    exam_center: Code = Field(description="UAI of the registering exam center.")
    birth_name: PersonName
    usage_name: PersonName | None = None
    given_names: list[PersonName] = Field(min_length=1, max_length=GIVEN_NAMES_MAX)
    email: Email
    access_route: AccessRoute
    candidate_group: Literal[1, 2, 3]
    ine: Code | None = None
    registered_at: datetime
    # Added in 2026-12 (optional: events published before lack them).
    show_exam_center: bool = Field(
        default=False,
        description="The candidate wants the exam center's name shown on their attestations.",
    )
    exam_center_name: Label | None = Field(
        default=None,
        description="Name of the registering exam center, when show_exam_center (absent "
        "before 2026-12).",
    )
    # Added in 2027-01 (optional: events published before lack it).
    preferred_language: Language = Field(default="fr", description=LANGUAGE_DESCRIPTION)


class BlocGraded(RegistryEvent):
    """A jury recorded a result for one unit (bloc) of one candidate, or corrected one."""

    NAME: ClassVar[str] = "bloc-graded"
    result_id: Ref = Field(description="Stable id of this result line.")
    candidate_number: Code
    certification: Code
    bloc: Code
    session: Session
    deliberation_id: Ref
    deliberated_on: date
    exam_center: Code
    mark: Literal["grade", "absent", "exempt"]
    grade: DecimalString | None = Field(default=None, pattern=DECIMAL_PATTERN)
    modality: Modality | None = None
    justification: FreeText | None = None
    corrects: Ref | None = Field(
        default=None, description="result_id of the line this one corrects (material error)."
    )
    correction_id: Ref | None = None
    reason: FreeText | None = None


class BlocValidated(RegistryEvent):
    """A bloc is acquired by a candidate, by a grade of at least 10/20 or by a VAE jury."""

    NAME: ClassVar[str] = "bloc-validated"
    validation_id: Ref = Field(description="Stable id of this acquisition.")
    candidate_number: Code
    certification: Code
    bloc: Code
    optional: bool
    via: Literal["grade", "vae"]
    grade: DecimalString | None = Field(default=None, pattern=DECIMAL_PATTERN)
    session: Session | None = None
    validated_on: date
    source_id: Ref = Field(description="The deliberation, VAE decision or correction.")
    exam_center: Code
    access_route: AccessRoute


class VaeDecisionRecorded(RegistryEvent):
    """A VAE jury decided: validation totale, partielle (named blocs) or refus."""

    NAME: ClassVar[str] = "vae-decision-recorded"
    decision_id: Ref
    candidate_number: Code
    certification: Code
    decided_on: date
    decision: Literal["totale", "partielle", "refus"]
    blocs: list[Code] = Field(max_length=BLOCS_MAX)
    exam_center: Code
    jury: Jury


class CertificationAwarded(RegistryEvent):
    """The candidate obtains the whole certification (diploma)."""

    NAME: ClassVar[str] = "certification-awarded"
    award_id: Ref
    candidate_number: Code
    certification: Code
    via: Literal["exam", "vae"]
    session: Session | None = None
    awarded_on: date
    average: DecimalString | None = Field(
        default=None, description="Weighted average, unrounded decimal string.", max_length=40
    )
    mention: Code | None = Field(default=None, description="Mention code from the referential.")
    source_id: Ref
    exam_center: Code
    access_route: AccessRoute


class BlocValidationWithdrawn(RegistryEvent):
    """A correction of a material error took an acquired bloc away."""

    NAME: ClassVar[str] = "bloc-validation-withdrawn"
    validation_id: Ref = Field(description="The acquisition withdrawn (see bloc-validated).")
    candidate_number: Code
    certification: Code
    bloc: Code
    withdrawn_on: date
    correction_id: Ref | Literal[""]
    corrects: Ref | Literal[""] = Field(description="result_id of the corrected line.")
    reason: FreeText
    exam_center: Code


class CertificationAwardWithdrawn(RegistryEvent):
    """A correction took the whole certification away."""

    NAME: ClassVar[str] = "certification-award-withdrawn"
    award_id: Ref
    candidate_number: Code
    certification: Code
    withdrawn_on: date
    correction_id: Ref | Literal[""]
    reason: FreeText
    exam_center: Code


# --- for each candidate in each decision: everything it changed --------------------------

DECISION_LINES_MAX = 32  # a candidate's lines in one decision: 15 blocs in RNCP40705


class GradedBloc(BaseModel):
    """A result the decision recorded for one unit (or, for a correction, the corrected one)."""

    model_config = ConfigDict(frozen=True)
    result_id: Ref = Field(description="Stable id of this result line.")
    bloc: Code
    session: Session
    mark: Literal["grade", "absent", "exempt"]
    grade: DecimalString | None = Field(default=None, pattern=DECIMAL_PATTERN)
    modality: Modality | None = None
    justification: FreeText | None = None
    corrects: Ref | None = Field(
        default=None, description="result_id of the line a correction replaces."
    )


class ValidatedBloc(BaseModel):
    """A bloc the decision gave the candidate."""

    model_config = ConfigDict(frozen=True)
    validation_id: Ref = Field(description="Stable id of this acquisition.")
    bloc: Code
    optional: bool
    via: Literal["grade", "vae"]
    grade: DecimalString | None = Field(default=None, pattern=DECIMAL_PATTERN)
    session: Session | None = Field(
        default=None, description="The session of the grade (none for VAE)."
    )
    validated_on: date = Field(description="Date of the jury decision that validated it.")
    source_id: Ref = Field(description="The deliberation or VAE decision that validated it.")
    carried_over: bool = Field(
        default=False,
        description="Validated by a grade of an earlier session (bénéfice des notes), not by "
        "this decision's own.",
    )


class WithdrawnBloc(BaseModel):
    """A bloc a correction took away."""

    model_config = ConfigDict(frozen=True)
    validation_id: Ref = Field(description="The acquisition withdrawn (see validated).")
    bloc: Code
    corrects: Ref | None = Field(default=None, description="result_id of the corrected line.")


class AwardDecided(BaseModel):
    """The whole certification (the diploma) awarded by the decision."""

    model_config = ConfigDict(frozen=True)
    award_id: Ref
    via: Literal["exam", "vae"]
    session: Session | None = None
    awarded_on: date
    average: DecimalString | None = Field(
        default=None, description="Weighted average, unrounded decimal string.", max_length=40
    )
    mention: Code | None = Field(default=None, description="Mention code from the referential.")
    source_id: Ref


class DecisionRecorded(RegistryEvent):
    """A jury's decision about one candidate, and everything it changed for them.

    One per candidate in each PV (``deliberation``), VAE decision (``vae``) or correction of a
    material error (``correction``): the results it recorded, the blocs it validated or
    withdrew, the award of the certification or its withdrawal. ``decided_on`` is the date of
    the jury's decision (for a correction, of the deliberation it corrects)."""

    NAME: ClassVar[str] = "decision-recorded"
    decision_id: Ref = Field(description="The deliberation, VAE decision or correction.")
    decision: Literal["deliberation", "vae", "correction"]
    candidate_number: Code
    exam_center: Code
    certification: Code
    access_route: AccessRoute
    route: Literal["exam", "vae"] = Field(description="How this decision was reached.")
    decided_on: date
    session: Session | None = Field(default=None, description="The exam session, if any.")
    vae_decision: Literal["totale", "partielle", "refus"] | None = None
    corrects: Ref | None = Field(
        default=None, description="For a correction: the deliberation it corrects."
    )
    corrected_on: date | None = None
    reason: FreeText | None = Field(default=None, description="For a correction: why.")
    graded: list[GradedBloc] = Field(default_factory=list, max_length=DECISION_LINES_MAX)
    validated: list[ValidatedBloc] = Field(default_factory=list, max_length=DECISION_LINES_MAX)
    withdrawn: list[WithdrawnBloc] = Field(default_factory=list, max_length=DECISION_LINES_MAX)
    award: AwardDecided | None = None
    award_withdrawn: Ref | None = Field(
        default=None, description="The award_id of the award the decision withdrew."
    )


class ExamCenterKeyIssued(RegistryEvent):
    """An exam center got a new API key. Only its SHA-256 digest travels (the key has 256
    random bits, so the digest reveals nothing); other services authenticate centers with it."""

    NAME: ClassVar[str] = "exam-center-key-issued"
    exam_center: Code
    key_id: Code
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    issued_at: datetime


class ExamCenterKeyRevoked(RegistryEvent):
    """An exam center's API key was revoked."""

    NAME: ClassVar[str] = "exam-center-key-revoked"
    exam_center: Code
    key_id: Code


EVENTS: tuple[type[RegistryEvent], ...] = (
    CandidateRegistered,
    DecisionRecorded,
    ExamCenterKeyIssued,
    ExamCenterKeyRevoked,
)
RETIRED: tuple[type[RegistryEvent], ...] = (
    BlocGraded,
    BlocValidated,
    VaeDecisionRecorded,
    CertificationAwarded,
    BlocValidationWithdrawn,
    CertificationAwardWithdrawn,
)
