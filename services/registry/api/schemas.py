"""Request and response bodies of the registry's public API (published in /openapi.json)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.registry_v1 import AccessRoute, JuryRole

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CandidateIn(_In):
    candidate_number: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
    birth_name: str = Field(min_length=1, max_length=100)
    usage_name: str | None = Field(default=None, max_length=100)
    given_names: list[str] = Field(min_length=1, max_length=6)
    birth_date: date
    email: str = Field(pattern=EMAIL, max_length=254)
    certification: str = Field(min_length=1, max_length=32)
    access_route: AccessRoute
    candidate_group: Literal[1, 2, 3]
    ine: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{11}$")

    def identity(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"candidate_number"})
        data["birth_date"] = self.birth_date.isoformat()
        data["candidate_number"] = self.candidate_number
        return data


class JuryMemberIn(_In):
    name: str = Field(min_length=1, max_length=200)
    role: JuryRole
    present: bool = True


class JuryIn(_In):
    members: list[JuryMemberIn] = Field(min_length=1, max_length=100)
    absence_exception: bool = False


class DeliberationMeta(_In):
    certification: str = Field(min_length=1, max_length=32)
    session: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2026-06"])
    deliberated_on: date
    jury: JuryIn


class DeliberationIn(DeliberationMeta):
    lines: list[dict[str, Any]] = Field(
        description='{candidate_number, bloc, grade (0-20, "ABS" or "DISP"), modality?, '
        "justification?}"
    )


class DeliberationOut(BaseModel):
    deliberation_id: str
    lines: int
    validated: int


class VaeDecisionIn(_In):
    candidate_number: str = Field(min_length=1, max_length=32)
    certification: str = Field(min_length=1, max_length=32)
    decided_on: date
    jury: JuryIn
    decision: Literal["totale", "partielle", "refus"]
    blocs: list[str] = Field(default_factory=list, max_length=20)


class VaeDecisionOut(BaseModel):
    decision_id: str


class CorrectionIn(_In):
    deliberation_id: str = Field(min_length=1, max_length=64)
    candidate_number: str = Field(min_length=1, max_length=32)
    bloc: str = Field(min_length=1, max_length=32)
    grade: float | str = Field(description='0-20, "ABS" or "DISP"')
    reason: str = Field(min_length=3, max_length=2000)


class CorrectionOut(BaseModel):
    correction_id: str
    acquired: list[str]
    awarded: bool
