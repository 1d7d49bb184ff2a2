"""Request and response bodies of the registry's public API (published in /openapi.json).

Every string is bounded and clean (``contracts.text``: names NFC-normalised, no control,
bidirectional-override or zero-width characters) and every list has a maximum count; the
limits are in the OpenAPI document (``maxLength``, ``maxItems``) and in the README.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

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


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date_text(value: object) -> object:
    # Lax pydantic takes 0 for 1970-01-01 and a date-time at midnight for its date.
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise PydanticCustomError("date_type", "date attendue (AAAA-MM-JJ)")
    return value


def _exact_int(value: object) -> object:
    # A Literal of integers matches True for 1 and 1.0 for 1 (they compare equal), strict or not.
    if type(value) is not int:
        raise PydanticCustomError("int_type", "nombre entier attendu")
    return value


def _code(pattern: str, what: str) -> Any:
    """A code checked against ``pattern``, refused with a French reason naming what it is."""
    compiled = re.compile(pattern)

    def check(value: object) -> object:
        if not isinstance(value, str) or not compiled.fullmatch(value.strip()):
            raise PydanticCustomError("cpf_code", what)
        return value.strip()

    return BeforeValidator(check)


# What the CPF declaration (cpf-1.1.2.xsd, ``titulaire``) needs beyond the identity: the
# holder's sex (``genre``: M or F), birth commune (``codeInsee``: 5 characters — the INSEE
# Code officiel géographique, 2A/2B for Corsica, 99 + country for a birth abroad — or a
# ``codePostal`` of at most 9), birth country (``codePaysNaissance``: 3 characters, the INSEE
# country code without its leading 99, 100 for France).
BirthInseeCode = Annotated[
    str,
    _code(
        r"(?:[0-9]{2}|2[AB])[0-9]{3}",
        "code INSEE de commune attendu : 5 caractères (ex. 75056, 2A004 ; 99 + pays pour une "
        "naissance à l'étranger, ex. 99134)",
    ),
    Field(max_length=5, description="Code INSEE (COG) of the birth commune; 99xxx abroad."),
]
BirthPostalCode = Annotated[
    str,
    _code(r"[0-9A-Z][0-9A-Z -]{0,8}", "code postal attendu : 1 à 9 lettres majuscules ou chiffres"),
    Field(max_length=9, description="Postal code of the birth commune (9 characters at most)."),
]
BirthCountryCode = Annotated[
    str,
    _code(r"[1-9][0-9]{2}", "code pays INSEE attendu : 3 chiffres (100 pour la France)"),
    Field(max_length=3, description="INSEE country code without its leading 99 (100: France)."),
]
FRANCE = "100"


def _language(value: object) -> object:
    if value not in ("fr", "en"):
        raise PydanticCustomError(
            "preferred_language",
            "langue préférée attendue : « fr » (français, par défaut) ou « en » (anglais)",
        )
    return value


PreferredLanguage = Annotated[Literal["fr", "en"], BeforeValidator(_language)]


# A date is what the schema says (a "YYYY-MM-DD" string), parsed once it is one.
IsoDate = Annotated[date, Strict(False), BeforeValidator(_date_text)]


class _In(BaseModel):
    # Strict: what the schema says is a boolean, an integer or a list is one. Lax pydantic
    # turns "yes" or 0.0 into a boolean, true into the grade 1.0 and 1.0 into group 1.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class CandidateIn(_In):
    candidate_number: CandidateNumber
    birth_name: NameInput
    usage_name: NameInput | None = None
    given_names: list[NameInput] = Field(min_length=1, max_length=GIVEN_NAMES_MAX)
    birth_date: IsoDate
    email: EmailInput
    certification: CertificationCode
    access_route: AccessRoute
    candidate_group: Annotated[Literal[1, 2, 3], BeforeValidator(_exact_int)]
    ine: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{11}$", max_length=11)
    # Optional here, required by the CPF declaration: an award whose holder lacks them is
    # reported by ``export-cpf``, not declared; registering again with them completes the record.
    sex: Literal["M", "F"] | None = Field(default=None, description="M or F (CPF ``sexe``).")
    birth_insee_code: BirthInseeCode | None = None
    birth_postal_code: BirthPostalCode | None = None
    birth_country_code: BirthCountryCode | None = None
    # Issue 12 item 3 (attestations): whether the exam center's name goes on the attestations.
    show_exam_center: bool = Field(
        default=False,
        description="Show the exam center's name on the candidate's attestations.",
    )
    # The language of the candidate's e-mails and of the pages their links open.
    preferred_language: PreferredLanguage = Field(
        default="fr",
        description="Langue des e-mails du candidat et des pages qu'ils ouvrent : fr (par "
        "défaut) ou en.",
    )

    @field_validator("birth_country_code")
    @classmethod
    def _birth_place_agrees(cls, country: str | None, info: ValidationInfo) -> str | None:
        code = info.data.get("birth_insee_code")
        if code and country and country != (code[2:] if code.startswith("99") else FRANCE):
            raise PydanticCustomError(
                "cpf_country",
                "le pays de naissance ne correspond pas au code INSEE de la commune de "
                "naissance (99 + pays pour une naissance à l'étranger, 100 pour la France)",
            )
        return country

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
    deliberated_on: IsoDate
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
    decided_on: IsoDate
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
