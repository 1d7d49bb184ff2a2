"""Version 1 of the events the registry publishes (``fr.certibloc.registry.<event>.v1``).

A compatible change adds optional fields; a breaking change is a new module and a new type,
published beside this one for a while. Grades and averages are decimal strings ("12.5"):
never floats, so nothing is rounded on the way.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import ContractEvent

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


class RegistryEvent(ContractEvent):
    """Base of the registry's published events."""

    SERVICE: ClassVar[str] = "registry"


class JuryMember(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    role: JuryRole
    present: bool


class Jury(BaseModel):
    model_config = ConfigDict(frozen=True)
    members: list[JuryMember]
    absence_exception: bool = False


class CandidateRegistered(RegistryEvent):
    """A candidate was registered for a certification by an exam center."""

    NAME: ClassVar[str] = "candidate-registered"
    candidate_number: str
    certification: str
    exam_center: str = Field(description="UAI of the registering exam center.")
    birth_name: str
    usage_name: str | None = None
    given_names: list[str]
    email: str
    access_route: AccessRoute
    candidate_group: Literal[1, 2, 3]
    ine: str | None = None
    registered_at: datetime


class BlocGraded(RegistryEvent):
    """A jury recorded a result for one unit (bloc) of one candidate, or corrected one."""

    NAME: ClassVar[str] = "bloc-graded"
    result_id: str = Field(description="Stable id of this result line.")
    candidate_number: str
    certification: str
    bloc: str
    session: str = Field(pattern=r"^\d{4}-\d{2}$")
    deliberation_id: str
    deliberated_on: date
    exam_center: str
    mark: Literal["grade", "absent", "exempt"]
    grade: DecimalString | None = Field(default=None, pattern=DECIMAL_PATTERN)
    modality: Modality | None = None
    justification: str | None = None
    corrects: str | None = Field(
        default=None, description="result_id of the line this one corrects (material error)."
    )
    correction_id: str | None = None
    reason: str | None = None


class BlocValidated(RegistryEvent):
    """A bloc is acquired by a candidate, by a grade of at least 10/20 or by a VAE jury."""

    NAME: ClassVar[str] = "bloc-validated"
    validation_id: str = Field(description="Stable id of this acquisition.")
    candidate_number: str
    certification: str
    bloc: str
    optional: bool
    via: Literal["grade", "vae"]
    grade: DecimalString | None = Field(default=None, pattern=DECIMAL_PATTERN)
    session: str | None = None
    validated_on: date
    source_id: str = Field(description="The deliberation, VAE decision or correction.")
    exam_center: str
    access_route: AccessRoute


class VaeDecisionRecorded(RegistryEvent):
    """A VAE jury decided: validation totale, partielle (named blocs) or refus."""

    NAME: ClassVar[str] = "vae-decision-recorded"
    decision_id: str
    candidate_number: str
    certification: str
    decided_on: date
    decision: Literal["totale", "partielle", "refus"]
    blocs: list[str]
    exam_center: str
    jury: Jury


class CertificationAwarded(RegistryEvent):
    """The candidate obtains the whole certification (diploma)."""

    NAME: ClassVar[str] = "certification-awarded"
    award_id: str
    candidate_number: str
    certification: str
    via: Literal["exam", "vae"]
    session: str | None = None
    awarded_on: date
    average: DecimalString | None = Field(
        default=None, description="Weighted average, unrounded decimal string."
    )
    mention: str | None = Field(default=None, description="Mention code from the referential.")
    source_id: str
    exam_center: str
    access_route: AccessRoute


class BlocValidationWithdrawn(RegistryEvent):
    """A correction of a material error took an acquired bloc away."""

    NAME: ClassVar[str] = "bloc-validation-withdrawn"
    validation_id: str = Field(description="The acquisition withdrawn (see bloc-validated).")
    candidate_number: str
    certification: str
    bloc: str
    withdrawn_on: date
    correction_id: str
    corrects: str = Field(description="result_id of the corrected line.")
    reason: str
    exam_center: str


class CertificationAwardWithdrawn(RegistryEvent):
    """A correction took the whole certification away."""

    NAME: ClassVar[str] = "certification-award-withdrawn"
    award_id: str
    candidate_number: str
    certification: str
    withdrawn_on: date
    correction_id: str
    reason: str
    exam_center: str


class ExamCenterKeyIssued(RegistryEvent):
    """An exam center got a new API key. Only its SHA-256 digest travels (the key has 256
    random bits, so the digest reveals nothing); other services authenticate centers with it."""

    NAME: ClassVar[str] = "exam-center-key-issued"
    exam_center: str
    key_id: str
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    issued_at: datetime


class ExamCenterKeyRevoked(RegistryEvent):
    """An exam center's API key was revoked."""

    NAME: ClassVar[str] = "exam-center-key-revoked"
    exam_center: str
    key_id: str


EVENTS: tuple[type[RegistryEvent], ...] = (
    CandidateRegistered,
    BlocGraded,
    BlocValidated,
    VaeDecisionRecorded,
    CertificationAwarded,
    BlocValidationWithdrawn,
    CertificationAwardWithdrawn,
    ExamCenterKeyIssued,
    ExamCenterKeyRevoked,
)
