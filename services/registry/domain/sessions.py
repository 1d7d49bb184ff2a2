"""Exam sessions ("2026-06") and the certification's validity window."""

from __future__ import annotations

import re
from datetime import date

from services.registry.domain.errors import RuleViolation

_SESSION = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def session_start(session: str) -> date:
    match = _SESSION.match(session)
    if match is None:
        raise RuleViolation(
            f"Session « {session} » invalide : attendu AAAA-MM, par exemple 2026-06."
        )
    return date(int(match.group(1)), int(match.group(2)), 1)


def check_in_window(session: str, valid_from: date, valid_until: date, code: str) -> None:
    """Results of a session outside the registration's validity window are refused."""
    start = session_start(session)
    first = valid_from.replace(day=1)
    if not first <= start <= valid_until:
        raise RuleViolation(
            f"La session {session} est hors de la période de validité de {code} "
            f"({valid_from:%d/%m/%Y} – {valid_until:%d/%m/%Y})."
        )


def check_date_in_window(day: date, valid_from: date, valid_until: date, code: str) -> None:
    if not valid_from <= day <= valid_until:
        raise RuleViolation(
            f"La date {day:%d/%m/%Y} est hors de la période de validité de {code} "
            f"({valid_from:%d/%m/%Y} – {valid_until:%d/%m/%Y})."
        )


def years_between(earlier: str, later: str) -> float:
    a, b = session_start(earlier), session_start(later)
    return (b.year - a.year) + (b.month - a.month) / 12
