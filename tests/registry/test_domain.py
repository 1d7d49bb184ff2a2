"""Pure domain rules of the registry: no store, no network."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contracts.referential import load_certification
from services.registry.domain import diploma
from services.registry.domain.errors import LineError, RuleViolation
from services.registry.domain.jury import Member, check_jury
from services.registry.domain.marks import parse_mark
from services.registry.domain.sessions import check_in_window

CERT = load_certification("RNCP40705")


@pytest.mark.parametrize(
    ("raw", "kind", "grade"),
    [
        (12.5, "grade", "12.5"),
        ("12,5", "grade", "12.5"),
        ("9.99", "grade", "9.99"),
        (20, "grade", "20"),
        ("0", "grade", "0"),
        (" abs ", "absent", None),
        ("DISP", "exempt", None),
    ],
)
def test_marks_are_parsed_without_rounding(raw: object, kind: str, grade: str | None) -> None:
    mark = parse_mark(raw)
    assert mark.kind == kind
    assert (None if mark.grade is None else str(mark.grade)) == grade


@pytest.mark.parametrize("raw", [21, -1, "dix", "20.5", "12.345", "", None, True, "1e1"])
def test_bad_marks_are_refused_with_a_reason(raw: object) -> None:
    with pytest.raises(LineError) as error:
        parse_mark(raw)
    assert error.value.field == "grade"
    assert "note" in error.value.message


def test_ten_validates_and_just_below_does_not() -> None:
    assert parse_mark("10").validates
    assert not parse_mark("9.99").validates
    assert not parse_mark("ABS").validates


def _jury(*roles: str, absent: tuple[int, ...] = ()) -> list[Member]:
    return [Member(f"m{i}", role, i not in absent) for i, role in enumerate(roles)]


def test_a_jury_with_a_third_of_professionals_in_equal_numbers_deliberates() -> None:
    check_jury(_jury("teacher_public", "teacher_private", "employer", "employee"), False)
    check_jury(
        _jury(
            "teacher_public",
            "teacher_public",
            "teacher_private",
            "teacher_public",
            "employer",
            "employee",
        ),
        False,
    )


@pytest.mark.parametrize(
    ("roles", "reason"),
    [
        (
            (
                "teacher_public",
                "teacher_public",
                "teacher_public",
                "employer",
                "employee",
                "teacher_private",
                "teacher_public",
            ),
            "tiers",
        ),
        (("teacher_public", "employer", "employer", "employee"), "nombre égal"),
        (("employer", "employee", "teacher_private"), "enseignement public"),
    ],
)
def test_a_jury_breaking_the_composition_rule_is_refused(
    roles: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(RuleViolation, match=reason):
        check_jury(_jury(*roles), False)


def test_absences_need_the_declared_exception() -> None:
    members = _jury("teacher_public", "teacher_private", "employer", "employee", absent=(3,))
    with pytest.raises(RuleViolation, match="absence"):
        check_jury(members, False)
    check_jury(members, True)
    with pytest.raises(RuleViolation, match="tous les membres"):
        check_jury(_jury("teacher_public", "employer", "employee"), True)


@pytest.mark.parametrize("session", ["2025-09", "2026-06", "2028-08"])
def test_sessions_inside_the_validity_window(session: str) -> None:
    check_in_window(session, CERT.valid_from, CERT.valid_until, CERT.code)


@pytest.mark.parametrize("session", ["2025-06", "2028-09", "2031-06"])
def test_sessions_outside_the_validity_window_are_refused(session: str) -> None:
    with pytest.raises(RuleViolation, match="hors de la période de validité"):
        check_in_window(session, CERT.valid_from, CERT.valid_until, CERT.code)


def _units(
    grades: dict[str, str], optional: dict[str, str] | None = None
) -> dict[str, diploma.Standing]:
    units = {
        b.code: diploma.Standing(b.code, "grade", Decimal(grades.get(b.code, "10")))
        for b in CERT.mandatory_blocs
    }
    for code, grade in (optional or {}).items():
        units[code] = diploma.Standing(code, "grade", Decimal(grade))
    return units


def test_weighted_average_and_mentions() -> None:
    assert diploma.evaluate(CERT, _units({})).decision == "awarded"
    all_12 = {b.code: "12" for b in CERT.mandatory_blocs}
    assert diploma.evaluate(CERT, _units(all_12)).mention == "assez_bien"
    all_18 = {b.code: "18" for b in CERT.mandatory_blocs}
    assert diploma.evaluate(CERT, _units(all_18)).mention == "tres_bien_felicitations"


def test_average_just_below_ten_is_not_rounded_up() -> None:
    # BC01 (coefficient 4) at 9.99, everything else at 10: the average is 9.9984, not 10.
    outcome = diploma.evaluate(CERT, _units({"RNCP40705BC01": "9.99"}))
    assert outcome.decision == "control_exam"
    assert outcome.average is not None and outcome.average < 10


def test_optional_units_add_only_points_above_ten() -> None:
    low = {"RNCP40705BC01": "9.5"}  # average 9.92 without the optional unit
    assert diploma.evaluate(CERT, _units(low, {"RNCP40705UF-MOB": "8"})).decision == "control_exam"
    outcome = diploma.evaluate(CERT, _units(low, {"RNCP40705UF-MOB": "14"}))
    assert outcome.decision == "awarded"
    assert outcome.average == Decimal("10.08")


def test_failed_below_eight_and_incomplete_without_every_unit() -> None:
    all_7 = {b.code: "7" for b in CERT.mandatory_blocs}
    assert diploma.evaluate(CERT, _units(all_7)).decision == "failed"
    units = _units({})
    del units["RNCP40705BC05"]
    outcome = diploma.evaluate(CERT, units)
    assert outcome.decision == "incomplete" and outcome.missing == ("RNCP40705BC05",)


def test_abs_counts_zero_and_disp_is_left_out() -> None:
    units = _units({})
    units["RNCP40705BC04"] = diploma.Standing("RNCP40705BC04", "absent")
    assert diploma.evaluate(CERT, units).average == Decimal(240) / Decimal(25)
    units["RNCP40705BC04"] = diploma.Standing("RNCP40705BC04", "exempt")
    assert diploma.evaluate(CERT, units).average == Decimal(10)


def test_everything_by_vae_awards_without_average() -> None:
    units = {b.code: diploma.Standing(b.code, "vae") for b in CERT.mandatory_blocs}
    outcome = diploma.evaluate(CERT, units)
    assert outcome.decision == "awarded" and outcome.average is None
