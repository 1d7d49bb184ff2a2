"""Diploma decision: weighted average, optional units, épreuve de contrôle, mentions.

Rules (BRIEF §2, referential ``diploma_rules``):
- the weighted average of the mandatory units decides; it passes at >= 10. The seed says
  "supérieure à 10/20", the regulation says "égale ou supérieure": we follow the regulation;
- ABS counts 0 unless justified (then the unit has no result and no decision can be taken);
  DISP and units acquired by VAE are left out of the average;
- a grade >= 10 from an earlier session is carried over for 5 years (bénéfice des notes);
- optional units add only their points above 10 (to the numerator);
- an average in [8, 10) gives access to the épreuve de contrôle;
- nothing is rounded before comparing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from contracts.referential import Certification
from services.registry.domain.records import Acquisition, ResultLine
from services.registry.domain.sessions import years_between

Decision = Literal["awarded", "control_exam", "failed", "incomplete"]
StandingKind = Literal["grade", "absent", "absent_justified", "exempt", "vae"]


@dataclass(frozen=True)
class Standing:
    """How one unit counts for the diploma decision of a session."""

    bloc: str
    kind: StandingKind
    grade: Decimal | None = None


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    average: Decimal | None = None
    mention: str | None = None
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "average": None if self.average is None else format(self.average, "f"),
            "mention": self.mention,
            "missing": list(self.missing),
        }


def standings(
    cert: Certification,
    session: str,
    results: Iterable[ResultLine],
    acquisitions: Mapping[str, Acquisition],
) -> dict[str, Standing]:
    """Each bloc's standing for ``session``: its result in that session, else VAE, else a
    carried-over grade."""
    rules = cert.diploma_rules
    current: dict[str, ResultLine] = {}
    carried: dict[str, Decimal] = {}
    for line in results:
        if line.session == session:
            current[line.bloc] = line
        elif (
            line.mark.kind == "grade"
            and line.mark.grade is not None
            and line.mark.grade >= rules.carry_over_min_grade
            and 0 < years_between(line.session, session) <= rules.carry_over_years
        ):
            carried[line.bloc] = max(carried.get(line.bloc, line.mark.grade), line.mark.grade)
    out: dict[str, Standing] = {}
    for bloc in cert.blocs:
        code = bloc.code
        in_session = current.get(code)
        if in_session is not None:
            out[code] = _standing_of(in_session)
        elif code in acquisitions and acquisitions[code].via == "vae":
            out[code] = Standing(code, "vae")
        elif code in carried:
            out[code] = Standing(code, "grade", carried[code])
    return out


def _standing_of(line: ResultLine) -> Standing:
    if line.mark.kind == "grade":
        return Standing(line.bloc, "grade", line.mark.grade)
    if line.mark.kind == "exempt":
        return Standing(line.bloc, "exempt")
    return Standing(line.bloc, "absent_justified" if line.justification else "absent")


def evaluate(cert: Certification, units: Mapping[str, Standing]) -> Outcome:
    rules = cert.diploma_rules
    missing = tuple(
        b.code
        for b in cert.mandatory_blocs
        if b.code not in units or units[b.code].kind == "absent_justified"
    )
    if missing:
        return Outcome("incomplete", missing=missing)
    points = Decimal(0)
    weight = Decimal(0)
    for bloc in cert.mandatory_blocs:
        unit = units[bloc.code]
        coefficient = bloc.coefficient or Decimal(1)
        if unit.kind == "grade":
            assert unit.grade is not None
            points += coefficient * unit.grade
            weight += coefficient
        elif unit.kind == "absent":
            weight += coefficient
    for bloc in cert.blocs:
        extra = units.get(bloc.code)
        if (
            bloc.optional
            and extra is not None
            and extra.kind == "grade"
            and extra.grade is not None
        ):
            points += max(Decimal(0), extra.grade - rules.optional_points_above)
    if weight == 0:
        return Outcome("awarded")  # every unit acquired by VAE or exempted: no average
    average = points / weight
    if average >= rules.pass_average:
        return Outcome("awarded", average, mention_for(cert, average))
    if average >= rules.control_exam_min_average:
        return Outcome("control_exam", average)
    return Outcome("failed", average)


def mention_for(cert: Certification, average: Decimal) -> str | None:
    found = None
    for mention in sorted(cert.diploma_rules.mentions, key=lambda m: m.min):
        if average >= mention.min:
            found = mention.code
    return found
