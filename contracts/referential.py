"""The certification referential: data files, one per code.

Blocs, competences (the official wording), modalities per candidate group, units and
coefficients, diploma rules, the certifier (who the attestations name as issuer) and the
attestation policy are data, so another certification is added by adding a file: packaged
ones under ``contracts/referentials/``, and a deployment's own in the directory named by the
environment variable ``CERTIBLOC_REFERENTIALS_DIR`` (read here, at each look-up, so this
package depends on nothing of the services'). Each file is ``<code>.json``; it is checked when
loaded, and a bad one raises ``ReferentialError`` naming the file and the field.

Texts are French (the official wording). A file may carry an English version of some of them,
used for the pages, PDFs and e-mails in English (never for the signed credential, which stays
French); what it does not translate stays French. Nothing is invented for a referential whose
official texts exist only in French::

    "translations": {"en": {
        "title": "…", "short_title": "…",
        "blocs": {"RNCP12345BC01": {"title": "…", "competences": ["…", "…"]}},
        "mentions": {"bien": "…"}}}

Every part is optional; a bloc named is one of the certification's, its ``competences`` (when
given) are as many as the French ones and in the same order, a mention named is one of its
mentions.
"""

from __future__ import annotations

import os
import re
from datetime import date
from decimal import Decimal
from functools import cache, cached_property
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

REFERENTIALS_DIR_ENV = "CERTIBLOC_REFERENTIALS_DIR"
# An RNCP code: the attestations name the RNCP as their framework and link its page (an RS
# code would need both for the Répertoire spécifique: not supported yet).
CODE_PATTERN = re.compile(r"RNCP\d{1,6}")

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


#: The languages a referential may translate its texts into (French is the original).
TRANSLATION_LANGUAGES = ("en",)


class BlocTranslation(_Frozen):
    title: str | None = None
    competences: list[str] | None = None


class Translation(_Frozen):
    """A referential's texts in another language (each part optional; see the module)."""

    title: str | None = None
    short_title: str | None = None
    blocs: dict[str, BlocTranslation] = {}
    mentions: dict[str, str] = {}


class Certification(_Frozen):
    code: str
    note: str | None = None  # e.g. what a test fixture says of itself
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
    translations: dict[str, Translation] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if CODE_PATTERN.fullmatch(self.code) is None:
            raise ValueError(f"code: {self.code!r} is not an RNCP code (RNCP12345)")
        seen: set[str] = set()
        for i, bloc in enumerate(self.blocs):
            where = f"blocs[{i}].code"
            if bloc.code in seen:
                raise ValueError(f"{where}: {bloc.code!r} appears twice")
            seen.add(bloc.code)
            suffix = bloc.code.removeprefix(self.code)
            if suffix == bloc.code or re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", suffix) is None:
                raise ValueError(f"{where}: {bloc.code!r} is not a bloc code of {self.code}")
            for group in bloc.modalities or {}:
                if group not in self.candidate_groups:
                    raise ValueError(
                        f"blocs[{i}].modalities: candidate group {group} is not one of "
                        "candidate_groups"
                    )
        if not any(not b.optional for b in self.blocs):
            raise ValueError("blocs: no mandatory bloc")
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until: before valid_from")
        self._check_translations()
        return self

    def _check_translations(self) -> None:
        blocs = {b.code: b for b in self.blocs}
        mentions = {m.code for m in self.diploma_rules.mentions}
        for lang, translation in self.translations.items():
            where = f"translations.{lang}"
            if lang not in TRANSLATION_LANGUAGES:
                raise ValueError(f"{where}: not one of {', '.join(TRANSLATION_LANGUAGES)}")
            for code, bloc in translation.blocs.items():
                if code not in blocs:
                    raise ValueError(f"{where}.blocs: {code!r} is not a bloc of {self.code}")
                french = blocs[code].competences
                if bloc.competences is not None and len(bloc.competences) != len(french):
                    raise ValueError(
                        f"{where}.blocs.{code}.competences: {len(bloc.competences)} "
                        f"competences, the French text has {len(french)}"
                    )
            for code in translation.mentions:
                if code not in mentions:
                    raise ValueError(f"{where}.mentions: {code!r} is not a mention")

    # The texts in a language: its translation where the file gives one, else French.

    def title_in(self, lang: str) -> str:
        translation = self.translations.get(lang)
        return (translation.title if translation else None) or self.title

    def bloc_title_in(self, code: str, lang: str) -> str | None:
        bloc = self.bloc(code)
        if bloc is None:
            return None
        translation = self.translations.get(lang)
        found = translation.blocs.get(code) if translation else None
        return (found.title if found else None) or bloc.title

    def competences_in(self, code: str, lang: str) -> list[str]:
        bloc = self.bloc(code)
        if bloc is None:
            return []
        translation = self.translations.get(lang)
        found = translation.blocs.get(code) if translation else None
        return list((found.competences if found else None) or bloc.competences)

    def mention_label_in(self, code: str, lang: str) -> str | None:
        """The mention's label in ``lang`` (French if untranslated), None if no such mention."""
        translation = self.translations.get(lang)
        if translation and code in translation.mentions:
            return translation.mentions[code]
        return next((m.label for m in self.diploma_rules.mentions if m.code == code), None)

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


class ReferentialError(ValueError):
    """A referential file that cannot be used: names the file and the field."""


def referentials_dir() -> Path | None:
    """The deployment's own referentials (``CERTIBLOC_REFERENTIALS_DIR``), if set."""
    value = os.environ.get(REFERENTIALS_DIR_ENV, "").strip()
    return Path(value) if value else None


def available_codes() -> list[str]:
    return sorted(_files(referentials_dir()))


def load_certification(code: str) -> Certification:
    """Load a referential by code; ``KeyError`` when there is none, ``ReferentialError`` when
    its file is not a valid referential."""
    return _load(code, referentials_dir())


def load_all() -> list[Certification]:
    """Every referential, each checked (a service calls it at start, to fail there)."""
    extra = referentials_dir()
    return [_load(code, extra) for code in sorted(_files(extra))]


@cache
def _files(extra: Path | None) -> dict[str, Traversable]:
    packaged = resources.files("contracts") / "referentials"
    found: dict[str, Traversable] = {
        p.name.removesuffix(".json"): p for p in packaged.iterdir() if p.name.endswith(".json")
    }
    if extra is None:
        return found
    if not extra.is_dir():
        raise ReferentialError(f"{REFERENTIALS_DIR_ENV}={extra}: not a directory")
    for path in sorted(extra.glob("*.json")):
        code = path.name.removesuffix(".json")
        if code in found:
            raise ReferentialError(
                f"{path}: certification {code} is already defined by {found[code]}"
            )
        found[code] = path
    return found


def _problem(error: Any) -> str:
    """``blocs.1.modalities.2: Input should be …``; a whole-file check's message names its
    field itself."""
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


@cache
def _load(code: str, extra: Path | None) -> Certification:
    source = _files(extra).get(code)
    if source is None:
        raise KeyError(code)
    try:
        certification = Certification.model_validate_json(source.read_text("utf-8"))
    except ValidationError as error:
        problems = "; ".join(_problem(e) for e in error.errors(include_url=False))
        raise ReferentialError(f"{source}: invalid referential: {problems}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReferentialError(f"{source}: unreadable: {error}") from None
    if certification.code != code:
        raise ReferentialError(
            f"{source}: code: {certification.code!r} differs from the file's name ({code}.json)"
        )
    return certification
