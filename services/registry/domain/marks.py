"""Marks on a result line: a grade on 0-20 (decimals, never rounded), ABS or DISP."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from services.registry.domain.errors import LineError

MAX_GRADE = Decimal(20)
PASS_GRADE = Decimal(10)
_GRADE = re.compile(r"^\s*(\d{1,2})(?:[.,](\d{1,2}))?\s*$")

MarkKind = Literal["grade", "absent", "exempt"]


@dataclass(frozen=True)
class Mark:
    kind: MarkKind
    grade: Decimal | None = None

    @property
    def validates(self) -> bool:
        """A unit graded at least 10/20 validates its bloc; compared unrounded."""
        return self.kind == "grade" and self.grade is not None and self.grade >= PASS_GRADE

    def to_text(self) -> str:
        if self.kind == "absent":
            return "ABS"
        if self.kind == "exempt":
            return "DISP"
        assert self.grade is not None
        return format(self.grade, "f")

    @classmethod
    def from_text(cls, text: str) -> Mark:
        return parse_mark(text)


def parse_mark(raw: object) -> Mark:
    """Parse a mark from JSON (number or string) or CSV (string, French decimal comma)."""
    hint = "attendu une note de 0 à 20 (ex. 12,5), ABS ou DISP"
    if isinstance(raw, bool) or raw is None:
        raise LineError("grade", f"note manquante : {hint}")
    if isinstance(raw, int | float):
        text = repr(raw) if isinstance(raw, float) else str(raw)
    elif isinstance(raw, str):
        text = raw
    else:
        raise LineError("grade", f"note invalide : {hint}")
    upper = text.strip().upper()
    if upper == "ABS":
        return Mark("absent")
    if upper == "DISP":
        return Mark("exempt")
    match = _GRADE.match(text)
    if match is None:
        shown = text if len(text) <= 20 else text[:20] + "…"
        raise LineError("grade", f"note invalide « {shown} » : {hint}")
    whole, fraction = match.groups()
    grade = Decimal(f"{whole}.{fraction}") if fraction else Decimal(whole)
    if grade > MAX_GRADE:
        raise LineError("grade", f"note {text.strip()} hors de l'échelle 0-20")
    return Mark("grade", grade)
