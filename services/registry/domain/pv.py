"""Result lines of a procès-verbal, checked one by one before anything is recorded."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.referential import Certification
from contracts.text import REASON_MAX, normalise_text, text_problem
from services.registry.domain.errors import LineError
from services.registry.domain.marks import Mark, parse_mark

MODALITIES = (
    "ccf",
    "ponctuel_ecrit",
    "ponctuel_oral",
    "ponctuel_pratique",
    "ponctuel_oral_pratique",
)
CANDIDATE_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
LINE_FIELDS = ("candidate_number", "bloc", "grade", "modality", "justification")
ROW_ERROR = "__row_error__"  # set by a reader that could not split the row into fields
# A PV's lines: twice a large academy's whole session (~2,000 candidates x 13 units), in
# one all-or-nothing request. The request body's own limit (REGISTRY_MAX_BODY_BYTES) also holds.
PV_LINES_MAX = 50_000
SHORT_FIELD_MAX = 32  # candidate number, bloc code, modality


def shown(value: object, limit: int = 40) -> str:
    """A client's value, cut, to quote it back in an error message."""
    text = value if isinstance(value, str) else "(absent)" if value is None else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class PvLine:
    number: int
    candidate_number: str
    bloc: str
    mark: Mark
    modality: str | None
    justification: str | None


@dataclass(frozen=True)
class LineProblem:
    line: int
    field: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


def check_candidate_number(value: object) -> str:
    if not isinstance(value, str) or not CANDIDATE_NUMBER.fullmatch(value.strip()):
        raise LineError(
            "candidate_number",
            "numéro de candidat manquant ou invalide (lettres, chiffres et tirets, 32 au plus)",
        )
    return value.strip()


def _optional_text(row: Mapping[str, Any], name: str, limit: int = SHORT_FIELD_MAX) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise LineError(name, f"{name} doit être un texte")
    text = normalise_text(value)
    assert isinstance(text, str)
    if len(text) > limit:
        raise LineError(name, f"{name} : {limit} caractères au plus ({len(text)} reçus)")
    problem = text_problem(text, multiline=True)
    if problem is not None:
        raise LineError(name, f"{name} : {problem}")
    return text or None


def parse_line(cert: Certification, number: int, row: Mapping[str, Any]) -> PvLine:
    unknown = sorted(set(row) - set(LINE_FIELDS))
    if unknown:
        raise LineError(unknown[0], f"champ inconnu « {unknown[0]} »")
    candidate_number = check_candidate_number(row.get("candidate_number"))
    bloc = row.get("bloc")
    if not isinstance(bloc, str) or cert.bloc(bloc.strip()) is None:
        raise LineError("bloc", f"bloc inconnu « {shown(bloc)} » pour la certification {cert.code}")
    mark = parse_mark(row.get("grade"))
    modality = _optional_text(row, "modality")
    if modality is not None and modality not in MODALITIES:
        raise LineError(
            "modality", f"modalité inconnue « {modality} » (attendu : {', '.join(MODALITIES)})"
        )
    justification = _optional_text(row, "justification", REASON_MAX)
    return PvLine(number, candidate_number, bloc.strip(), mark, modality, justification)


def parse_lines(
    cert: Certification, rows: Sequence[tuple[int, object]]
) -> tuple[list[PvLine], list[LineProblem]]:
    """Parse numbered rows; report every bad line (a PV is all or nothing)."""
    lines: list[PvLine] = []
    problems: list[LineProblem] = []
    seen: dict[tuple[str, str], int] = {}
    for number, row in rows:
        if not isinstance(row, Mapping):
            problems.append(LineProblem(number, "", "une ligne doit être un objet JSON"))
            continue
        if ROW_ERROR in row:
            problems.append(LineProblem(number, "", str(row[ROW_ERROR])))
            continue
        try:
            line = parse_line(cert, number, row)
        except LineError as error:
            problems.append(LineProblem(number, error.field, error.message))
            continue
        key = (line.candidate_number, line.bloc)
        if key in seen:
            problems.append(
                LineProblem(
                    number,
                    "bloc",
                    f"doublon : le candidat {line.candidate_number} a déjà une ligne pour "
                    f"{line.bloc} (ligne {seen[key]})",
                )
            )
            continue
        seen[key] = number
        lines.append(line)
    if not rows:
        problems.append(LineProblem(0, "lines", "le procès-verbal ne contient aucune ligne"))
    return lines, problems


def check_line_count(count: int) -> None:
    if count > PV_LINES_MAX:
        raise LineError(
            "lines",
            f"{count} lignes : un procès-verbal en compte {PV_LINES_MAX} au plus ; "
            "envoyez-le en plusieurs procès-verbaux",
        )
