"""The certification referential: data files under ``contracts/referentials/``, one per code.

Blocs, competences (the official wording), modalities per candidate group, units and
coefficients, diploma rules and the attestation policy are data, so another certification is
added by adding a file.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import cache, cached_property
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict

Modality = Literal[
    "ccf", "ponctuel_ecrit", "ponctuel_oral", "ponctuel_pratique", "ponctuel_oral_pratique"
]
CandidateGroup = Literal["1", "2", "3"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodeLabel(_Frozen):
    code: str
    label: str


class Certifier(_Frozen):
    name: str
    siret: str


class Predecessor(_Frozen):
    code: str
    title: str


class AttestationPolicy(_Frozen):
    bloc_attestation_access_routes: list[str]
    certification_attestation_for_all: bool
    source: str
    note: str | None = None


class Mention(_Frozen):
    code: str
    label: str
    min: Decimal


class DiplomaRules(_Frozen):
    pass_average: Decimal
    control_exam_min_average: Decimal
    optional_points_above: Decimal
    carry_over_years: int
    carry_over_min_grade: Decimal
    mentions: list[Mention]
    note: str | None = None


class CompetenceGroup(_Frozen):
    title: str
    competences: list[str]


class Bloc(_Frozen):
    code: str
    title: str
    optional: bool
    unit: str
    coefficient: Decimal | None
    unit_source: str
    preamble: str | None = None
    competences: list[str]
    competence_groups: list[CompetenceGroup] | None = None
    context: str | None = None
    modalities: dict[CandidateGroup, Modality] | None = None
    modality_text: dict[CandidateGroup, str] | None = None
    note: str | None = None


class Certification(_Frozen):
    code: str
    title: str
    short_title: str
    level: int
    nsf: list[CodeLabel]
    formacode: list[CodeLabel]
    rome: list[CodeLabel]
    certifier: Certifier
    valid_from: date
    valid_until: date
    predecessors: list[Predecessor]
    candidate_groups: dict[CandidateGroup, str]
    attestation_policy: AttestationPolicy
    diploma_rules: DiplomaRules
    jury_rule: str
    secondary_sources: str
    blocs: list[Bloc]

    @cached_property
    def _by_code(self) -> dict[str, Bloc]:
        return {b.code: b for b in self.blocs}

    def bloc(self, code: str) -> Bloc | None:
        return self._by_code.get(code)

    @cached_property
    def mandatory_blocs(self) -> list[Bloc]:
        return [b for b in self.blocs if not b.optional]

    def grants_bloc_attestations(self, access_route: str) -> bool:
        return access_route in self.attestation_policy.bloc_attestation_access_routes


def available_codes() -> list[str]:
    folder = resources.files("contracts") / "referentials"
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


@cache
def load_certification(code: str) -> Certification:
    """Load a referential by RNCP code; ``KeyError`` when there is none."""
    if code not in available_codes():
        raise KeyError(code)
    text = (resources.files("contracts") / "referentials" / f"{code}.json").read_text("utf-8")
    return Certification.model_validate_json(text)
