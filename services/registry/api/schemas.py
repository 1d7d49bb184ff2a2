"""Request and response bodies of the registry's public API (published in /openapi.json).

Every string is bounded and clean (``contracts.text``: names NFC-normalised, no control,
bidirectional-override or zero-width characters) and every list has a maximum count; the
limits are in the OpenAPI document (``maxLength``, ``maxItems``) and in the README.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.registry_v1 import BLOCS_MAX, JURY_MEMBERS_MAX, AccessRoute, JuryRole
from contracts.text import (
    CODE_MAX,
    GIVEN_NAMES_MAX,
    REASON_MAX,
    EmailInput,
    NameInput,
    TextInput,
)
from services.registry.domain.pv import PV_LINES_MAX

CandidateNumber = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$",
        max_length=CODE_MAX,
        description="The number the center's numbering authority (its academy's exam office) "
        "gave the candidate: letters, digits and hyphens, 32 at most.",
    ),
]
CertificationCode = Annotated[str, Field(min_length=1, max_length=CODE_MAX)]
BlocCode = Annotated[str, Field(min_length=1, max_length=CODE_MAX)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CandidateIn(_In):
    candidate_number: CandidateNumber
    birth_name: NameInput
    usage_name: NameInput | None = None
    given_names: list[NameInput] = Field(min_length=1, max_length=GIVEN_NAMES_MAX)
    birth_date: date
    email: EmailInput
    certification: CertificationCode
    access_route: AccessRoute
    candidate_group: Literal[1, 2, 3]
    ine: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{11}$", max_length=11)

    def identity(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"candidate_number"})
        data["birth_date"] = self.birth_date.isoformat()
        data["candidate_number"] = self.candidate_number
        return data


class JuryMemberIn(_In):
    name: NameInput
    role: JuryRole
    present: bool = True


class JuryIn(_In):
    members: list[JuryMemberIn] = Field(min_length=1, max_length=JURY_MEMBERS_MAX)
    absence_exception: bool = False


class DeliberationMeta(_In):
    certification: CertificationCode
    session: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", max_length=7, examples=["2026-06"])
    deliberated_on: date
    jury: JuryIn


class DeliberationIn(DeliberationMeta):
    lines: list[dict[str, Any]] = Field(
        max_length=PV_LINES_MAX,
        description='{candidate_number, bloc, grade (0-20, "ABS" or "DISP"), modality?, '
        f"justification? ({REASON_MAX} characters at most)}}; {PV_LINES_MAX} lines at most",
    )


class DeliberationOut(BaseModel):
    deliberation_id: str
    lines: int
    validated: int


class VaeDecisionIn(_In):
    candidate_number: CandidateNumber
    certification: CertificationCode
    decided_on: date
    jury: JuryIn
    decision: Literal["totale", "partielle", "refus"]
    blocs: list[BlocCode] = Field(default_factory=list, max_length=BLOCS_MAX)


class VaeDecisionOut(BaseModel):
    decision_id: str


class CorrectionIn(_In):
    deliberation_id: str = Field(min_length=1, max_length=64)
    candidate_number: CandidateNumber
    bloc: BlocCode
    grade: float | Annotated[str, Field(max_length=8)] = Field(description='0-20, "ABS" or "DISP"')
    reason: Annotated[TextInput, Field(min_length=3)]


class CorrectionOut(BaseModel):
    correction_id: str
    acquired: list[str]
    awarded: bool
