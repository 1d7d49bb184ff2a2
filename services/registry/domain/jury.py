"""Jury composition rule (seed, 'Composition des jurys').

1. Teachers from public education and, unless impossible, at least one from private education
   under contract or a CFA (``teacher_private``): the latter is not enforceable ("sauf
   impossibilité"), so it is reported, not refused.
2. At least one third of the members from the profession, employers and employees in equal
   numbers.
3. If absences break that proportion the jury may still deliberate: the exception must be
   declared, and only absences may cause the break.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from services.registry.domain.errors import RuleViolation

ROLES = ("teacher_public", "teacher_private", "employer", "employee")


@dataclass(frozen=True)
class Member:
    name: str
    role: str
    present: bool


def _proportion_problem(members: Sequence[Member]) -> str | None:
    counts = Counter(m.role for m in members)
    professionals = counts["employer"] + counts["employee"]
    if counts["teacher_public"] == 0:
        return "le jury doit comprendre au moins un professeur de l'enseignement public"
    if professionals * 3 < len(members):
        return (
            f"les membres de la profession doivent être au moins un tiers du jury "
            f"({professionals} sur {len(members)})"
        )
    if counts["employer"] != counts["employee"]:
        return (
            f"employeurs et salariés doivent être en nombre égal "
            f"({counts['employer']} employeur(s), {counts['employee']} salarié(s))"
        )
    return None


def check_jury(members: Sequence[Member], absence_exception: bool) -> None:
    """Raise ``RuleViolation`` when the jury may not deliberate."""
    if not members:
        raise RuleViolation("Composition du jury absente.")
    unknown = sorted({m.role for m in members} - set(ROLES))
    if unknown:
        raise RuleViolation(f"Rôle de juré inconnu : {', '.join(unknown)}.")
    present = [m for m in members if m.present]
    if not present:
        raise RuleViolation("Aucun membre du jury n'est présent.")
    problem = _proportion_problem(members)
    if problem:
        raise RuleViolation(f"Composition du jury non conforme : {problem}.")
    problem_present = _proportion_problem(present)
    if problem_present and not absence_exception:
        raise RuleViolation(
            f"Composition du jury non conforme en raison d'absences : {problem_present}. "
            "Si le jury a néanmoins délibéré, déclarez l'exception d'absence "
            "(absence_exception: true)."
        )
    if absence_exception and len(present) == len(members):
        raise RuleViolation(
            "Exception d'absence déclarée alors que tous les membres du jury sont présents."
        )


def lacks_private_teacher(members: Sequence[Member]) -> bool:
    """True when no private/CFA teacher sits on the jury (allowed when impossible)."""
    return not any(m.role == "teacher_private" for m in members)
