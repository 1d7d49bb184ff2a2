"""The registry's rules through ``RegistryApp`` on eventsourcing's in-memory (POPO) store: no
NATS, no HTTP. Identity, validity window, jury, VAE decisions, corrections and the
idempotency of the commands that change one candidate; each test states its rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pytest
from eventsourcing.popo import POPOProcessRecorder

from contracts.referential import load_certification
from services.registry.application import Receipt, RegistryApp
from services.registry.domain import ids
from services.registry.domain.candidate import Candidate
from services.registry.domain.errors import ConflictingState, RuleViolation, UnknownEntity

CERT = load_certification("RNCP40705")
A, B = "0750001A", "0690002B"
MANDATORY = [b.code for b in CERT.mandatory_blocs]
BC01, BC02, BC03, BC04 = (f"RNCP40705BC0{n}" for n in (1, 2, 3, 4))
INE = "1234567890A"
POPO = {
    "PERSISTENCE_MODULE": "eventsourcing.popo",
    "REGISTRY_PERSISTENCE_MODULE": "eventsourcing.popo",  # wins over a REGISTRY_ one in env
}


def member(name: str, role: str, present: bool = True) -> dict[str, Any]:
    return {"name": name, "role": role, "present": present}


JURY = {
    "members": [
        member("Mme Leroy", "teacher_public"),
        member("M. Benali", "teacher_private"),
        member("Mme Petit", "employer"),
        member("M. Moreau", "employee"),
    ]
}


@pytest.fixture
def app() -> RegistryApp:
    registry = RegistryApp(env=POPO)
    assert isinstance(registry.process_recorder, POPOProcessRecorder)
    return registry


def identity(number: str, **changes: Any) -> dict[str, Any]:
    return {
        "candidate_number": number,
        "birth_name": "Durand",
        "usage_name": None,
        "given_names": ["Léa"],
        "birth_date": "1994-03-12",
        "email": f"{number.lower()}@example.org",
        "certification": CERT.code,
        "access_route": "formation_continue",
        "candidate_group": 1,
        "ine": None,
        **changes,
    }


def register(app: RegistryApp, number: str = "C1", center: str = A, **changes: Any) -> Candidate:
    created, candidate = app.register_candidate(center, identity(number, **changes))
    assert created
    return candidate


def vae_candidate(app: RegistryApp, number: str = "V1", center: str = A) -> Candidate:
    return register(app, number, center, access_route="vae")


def pv(
    app: RegistryApp,
    marks: Mapping[str, str],
    *,
    number: str = "C1",
    session: str = "2026-06",
    on: date = date(2026, 7, 3),
    center: str = A,
    jury: Mapping[str, Any] = JURY,
) -> str:
    """Record a PV of ``number``'s marks; its deliberation id."""
    rows = [
        (n, {"candidate_number": number, "bloc": bloc, "grade": grade})
        for n, (bloc, grade) in enumerate(marks.items(), start=1)
    ]
    receipt = app.record_deliberation(
        center,
        certification=CERT.code,
        session=session,
        deliberated_on=on,
        jury=jury,
        rows=rows,
        idempotency_key=None,
        request_digest="pv",
    )
    deliberation_id: str = receipt.body["deliberation_id"]
    return deliberation_id


def every_unit(grade: str) -> dict[str, str]:
    return dict.fromkeys(MANDATORY, grade)


def vae(
    app: RegistryApp,
    decision: str,
    blocs: Sequence[str] = (),
    *,
    number: str = "V1",
    on: date = date(2026, 5, 20),
    center: str = A,
    jury: Mapping[str, Any] = JURY,
    key: str | None = None,
    digest: str = "",
) -> Receipt:
    return app.record_vae_decision(
        center,
        candidate_number=number,
        certification=CERT.code,
        decided_on=on,
        decision=decision,
        blocs=list(blocs),
        jury=jury,
        idempotency_key=key,
        request_digest=digest,
    )


def correct(
    app: RegistryApp,
    deliberation_id: str,
    bloc: str,
    grade: str,
    *,
    number: str = "C1",
    center: str = A,
    key: str | None = None,
    digest: str = "",
) -> Receipt:
    return app.correct_result(
        center,
        deliberation_id=deliberation_id,
        candidate_number=number,
        bloc=bloc,
        grade=grade,
        reason="Erreur de report de la note",
        idempotency_key=key,
        request_digest=digest,
    )


def stored(app: RegistryApp) -> int:
    """How many events the store holds."""
    return app.process_recorder.max_notification_id() or 0


def history(app: RegistryApp, number: str = "C1", center: str = A) -> list[Any]:
    return app.candidate_history(app.candidate(center, number))


def kinds(events: Sequence[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


# --- candidate identity --------------------------------------------------------------------


def test_the_same_number_at_two_centers_is_two_candidates(app: RegistryApp) -> None:
    lea = register(app, "C1", A)
    tom = register(app, "C1", B, birth_name="Martin", given_names=["Tom"])
    assert (lea.id, tom.id) == (ids.candidate_id(A, "C1"), ids.candidate_id(B, "C1"))
    pv(app, {BC01: "12"}, center=B)
    assert app.candidate(A, "C1").results == {}
    assert [r.bloc for r in app.candidate(B, "C1").results.values()] == [BC01]
    assert (app.candidate(A, "C1").birth_name, app.candidate(B, "C1").birth_name) == (
        "Durand",
        "Martin",
    )


def test_registering_the_same_identity_again_creates_nothing(app: RegistryApp) -> None:
    first = register(app)
    before = stored(app)
    created, again = app.register_candidate(A, identity("C1"))
    assert (created, again.id, again.version) == (False, first.id, first.version)
    assert stored(app) == before


def test_another_identity_under_a_number_at_the_same_center_is_a_conflict(
    app: RegistryApp,
) -> None:
    register(app)
    before = stored(app)
    with pytest.raises(ConflictingState, match="avec une autre identité"):
        app.register_candidate(A, identity("C1", birth_name="Autre"))
    assert stored(app) == before and app.candidate(A, "C1").birth_name == "Durand"


def test_an_ine_links_records_whose_birth_dates_agree_and_keeps_a_conflict_apart(
    app: RegistryApp,
) -> None:
    register(app, "C1", A, ine=INE)
    register(app, "X2", B, ine=INE.lower())  # the same INE, spelled in lower case
    register(app, "Z3", B, ine=INE, birth_date="2001-01-01", birth_name="Autre")
    register(app, "W4", B)  # no INE: no link
    person = app.person(INE)
    assert person is not None and person.birth_date == "1994-03-12"
    assert [(r["exam_center"], r["candidate_number"]) for r in person.records] == [
        (A, "C1"),
        (B, "X2"),
    ]
    assert [(r["exam_center"], r["candidate_number"]) for r in person.conflicts] == [(B, "Z3")]
    created, _ = app.register_candidate(A, identity("C1", ine=INE))  # the same again
    again = app.person(INE.lower())
    assert not created and again is not None and again.version == person.version


# --- a PV's grades and the validity window -------------------------------------------------


def test_a_pv_validates_the_blocs_graded_ten_or_more_and_counts_them(app: RegistryApp) -> None:
    register(app)
    deliberation_id = pv(app, {BC01: "10", BC02: "9.99", BC03: "ABS", BC04: "DISP"})
    assert app.deliberation(A, deliberation_id).receipt() == {
        "deliberation_id": deliberation_id,
        "lines": 4,
        "validated": 1,
    }
    assert sorted(app.candidate(A, "C1").acquisitions) == [BC01]


@pytest.mark.parametrize("session", ["2025-08", "2028-09"])
def test_a_pv_for_a_session_outside_the_validity_window_is_refused(
    app: RegistryApp, session: str
) -> None:
    register(app)
    before = stored(app)
    with pytest.raises(RuleViolation, match="hors de la période de validité"):
        pv(app, {BC01: "12"}, session=session, on=date(2028, 9, 15))
    assert stored(app) == before and app.candidate(A, "C1").results == {}


@pytest.mark.parametrize(
    ("session", "on"), [("2025-09", date(2025, 9, 30)), ("2028-08", date(2028, 9, 15))]
)
def test_the_first_and_last_sessions_of_the_validity_window_are_recorded(
    app: RegistryApp, session: str, on: date
) -> None:
    register(app)
    pv(app, {BC01: "12"}, session=session, on=on)
    assert app.candidate(A, "C1").acquisitions[BC01].session == session


def test_a_pv_deliberated_before_the_certification_is_valid_is_refused(app: RegistryApp) -> None:
    register(app)
    with pytest.raises(RuleViolation, match="31/08/2025 est hors de la période"):
        pv(app, {BC01: "12"}, session="2025-09", on=date(2025, 8, 31))


@pytest.mark.parametrize("on", [date(2025, 8, 31), date(2028, 9, 1)])
def test_a_vae_decision_outside_the_validity_window_is_refused(app: RegistryApp, on: date) -> None:
    vae_candidate(app)
    before = stored(app)
    with pytest.raises(RuleViolation, match="hors de la période de validité"):
        vae(app, "totale", on=on)
    assert stored(app) == before


def test_a_vae_decision_on_the_last_day_of_the_validity_window_is_recorded(
    app: RegistryApp,
) -> None:
    vae_candidate(app)
    vae(app, "partielle", [BC01], on=date(2028, 8, 31))
    assert app.candidate(A, "V1").acquisitions[BC01].validated_on == "2028-08-31"


# --- jury composition -----------------------------------------------------------------------


def test_a_jury_broken_by_its_composition_is_refused_even_with_the_absence_exception(
    app: RegistryApp,
) -> None:
    register(app)
    jury = {
        "members": [
            member("A", "teacher_public"),
            member("B", "employer"),
            member("C", "employer", present=False),
            member("D", "employee"),
        ],
        "absence_exception": True,
    }
    before = stored(app)
    with pytest.raises(RuleViolation, match="non conforme : employeurs et salariés"):
        pv(app, {BC01: "12"}, jury=jury)
    assert stored(app) == before


def test_a_jury_broken_only_by_absences_deliberates_once_the_exception_is_declared(
    app: RegistryApp,
) -> None:
    register(app)
    members = [
        member("A", "teacher_public"),
        member("B", "teacher_public"),
        member("C", "teacher_private"),
        member("D", "employer"),
        member("E", "employee", present=False),  # 2 of 5 professionals, 1 of 4 present
    ]
    with pytest.raises(RuleViolation, match="en raison d'absences"):
        pv(app, {BC01: "12"}, jury={"members": members})
    deliberation_id = pv(app, {BC01: "12"}, jury={"members": members, "absence_exception": True})
    assert app.deliberation(A, deliberation_id).jury["absence_exception"] is True


def test_a_jury_with_nobody_present_is_refused(app: RegistryApp) -> None:
    register(app)
    absent = [{**m, "present": False} for m in JURY["members"]]
    with pytest.raises(RuleViolation, match="Aucun membre du jury n'est présent"):
        pv(app, {BC01: "12"}, jury={"members": absent, "absence_exception": True})


def test_a_vae_jury_follows_the_same_composition_rule(app: RegistryApp) -> None:
    vae_candidate(app)
    teachers_only = {"members": [member("A", "teacher_public"), member("B", "teacher_private")]}
    with pytest.raises(RuleViolation, match="au moins un tiers"):
        vae(app, "totale", jury=teachers_only)
    assert app.candidate(A, "V1").acquisitions == {}


# --- VAE decisions --------------------------------------------------------------------------


def test_a_total_vae_validates_every_mandatory_bloc_and_awards_the_diploma(
    app: RegistryApp,
) -> None:
    vae_candidate(app)
    receipt = vae(app, "totale")
    decision_id = receipt.body["decision_id"]
    candidate = app.candidate(A, "V1")
    assert sorted(candidate.acquisitions) == MANDATORY  # not the optional units
    assert {(a.via, a.grade, a.source_id) for a in candidate.acquisitions.values()} == {
        ("vae", None, decision_id)
    }
    assert candidate.award is not None
    assert candidate.award.to_dict() == {
        "award_id": ids.award_id("V1", decision_id),
        "via": "vae",
        "session": "2026-05",
        "average": None,
        "mention": None,
        "awarded_on": "2026-05-20",
        "source_id": decision_id,
    }
    event = history(app, "V1")[-1]
    assert (event.decision, event.blocs, event.outcome["decision"]) == (
        "totale",
        MANDATORY,
        "awarded",
    )


def test_a_partial_vae_validates_exactly_the_named_blocs(app: RegistryApp) -> None:
    vae_candidate(app)
    vae(app, "partielle", [BC03, BC01])
    candidate = app.candidate(A, "V1")
    assert sorted(candidate.acquisitions) == [BC01, BC03] and candidate.award is None
    event = history(app, "V1")[-1]
    assert [a["bloc"] for a in event.validated] == [BC01, BC03]
    assert event.outcome["missing"] == [b for b in MANDATORY if b not in (BC01, BC03)]


def test_a_vae_refusal_validates_nothing_and_is_recorded(app: RegistryApp) -> None:
    vae_candidate(app)
    vae(app, "refus")
    candidate = app.candidate(A, "V1")
    assert candidate.acquisitions == {} and candidate.award is None
    event = history(app, "V1")[-1]
    assert kinds([event]) == ["VaeDecisionRecorded"]
    assert (event.decision, event.blocs, event.validated, event.award) == ("refus", [], [], None)


@pytest.mark.parametrize(
    ("decision", "blocs", "reason"),
    [
        ("totale", [BC01], "ne liste pas de blocs"),
        ("partielle", [], "doit nommer les blocs"),
        ("refus", [BC01], "ne valide aucun bloc"),
        ("partielle", ["RNCP40705BC99"], "inconnu"),
        ("partielle", [BC01, BC01], "cité deux fois"),
    ],
)
def test_a_vae_decision_names_its_blocs_as_its_kind_requires(
    app: RegistryApp, decision: str, blocs: list[str], reason: str
) -> None:
    vae_candidate(app)
    before = stored(app)
    with pytest.raises(RuleViolation, match=reason):
        vae(app, decision, blocs)
    assert stored(app) == before


def test_only_a_candidate_registered_by_the_vae_route_can_receive_a_vae_decision(
    app: RegistryApp,
) -> None:
    register(app, "C1")
    before = stored(app)
    with pytest.raises(RuleViolation, match="n'est pas inscrit par la voie de la VAE"):
        vae(app, "partielle", [BC01], number="C1")
    assert stored(app) == before


def test_blocs_acquired_by_vae_are_left_out_of_a_later_sessions_average(
    app: RegistryApp,
) -> None:
    vae_candidate(app)
    vae(app, "partielle", [BC01, BC02, BC03, BC04])
    pv(app, dict.fromkeys(MANDATORY[4:], "12"), number="V1")
    award = app.candidate(A, "V1").award
    assert award is not None
    # 21 x 12 / 21: the VAE units are neither 0 nor in the denominator (that would be 10.08).
    assert (award.via, award.session, award.average, award.mention) == (
        "exam",
        "2026-06",
        "12",
        "assez_bien",
    )


def test_a_bloc_acquired_by_vae_is_not_withdrawn_by_a_correction_of_its_exam_grade(
    app: RegistryApp,
) -> None:
    vae_candidate(app)
    decision_id = vae(app, "partielle", [BC01]).body["decision_id"]
    deliberation_id = pv(app, {BC01: "12"}, number="V1")
    receipt = correct(app, deliberation_id, BC01, "5", number="V1")
    assert receipt.body["acquired"] == [BC01]
    held = app.candidate(A, "V1").acquisitions[BC01]
    assert (held.via, held.source_id) == ("vae", decision_id)
    assert history(app, "V1")[-1].withdrawn == []


@pytest.mark.xfail(
    strict=True,
    reason="BUG: a VAE decision naming a bloc already acquired by a grade records no VAE "
    "acquisition (acquisitions_after keeps the grade one); a later correction of that grade "
    "then withdraws the bloc although the VAE jury validated it.",
)
def test_a_vae_validation_survives_a_correction_of_an_earlier_grade_of_the_bloc(
    app: RegistryApp,
) -> None:
    vae_candidate(app)
    deliberation_id = pv(app, {BC01: "12"}, number="V1")
    vae(app, "partielle", [BC01], on=date(2026, 9, 10))
    correct(app, deliberation_id, BC01, "5", number="V1")
    held = app.candidate(A, "V1").acquisitions.get(BC01)
    assert held is not None and held.via == "vae"


@pytest.mark.parametrize(
    "decided_on",
    [
        date(2026, 7, 1),
        pytest.param(
            date(2026, 6, 30),
            marks=pytest.mark.xfail(
                strict=True,
                reason="BUG: a VAE decision is decided as session decided_on[:7]; in the "
                "month of the exam session, diploma.standings puts that session's exam "
                "grades before the VAE, so the blocs the VAE jury validated count with "
                "their failing grades (average 8.64, épreuve de contrôle) where a day later "
                "they are left out (12, awarded).",
            ),
        ),
    ],
)
def test_a_vae_decision_leaves_its_blocs_out_of_the_average_whatever_day_it_is_taken(
    app: RegistryApp, decided_on: date
) -> None:
    vae_candidate(app)
    failed_four = {**every_unit("12"), BC01: "5", BC02: "5", BC03: "5", BC04: "5"}
    pv(app, failed_four, number="V1")  # session 2026-06: 8.64, épreuve de contrôle
    assert app.candidate(A, "V1").award is None
    vae(app, "partielle", [BC01, BC02, BC03, BC04], on=decided_on)
    award = app.candidate(A, "V1").award
    assert award is not None and (award.average, award.mention) == ("12", "assez_bien")


# --- corrections of a material error --------------------------------------------------------


def test_a_correction_names_what_it_corrects_and_the_history_keeps_every_event(
    app: RegistryApp,
) -> None:
    register(app)
    deliberation_id = pv(app, every_unit("12"))
    receipt = correct(app, deliberation_id, BC04, "8")
    assert receipt.created and receipt.body == {
        "correction_id": receipt.body["correction_id"],
        "acquired": [b for b in MANDATORY if b != BC04],
        "awarded": True,  # 11.84 still passes: re-granted on the corrected grades
    }
    registered, recorded, corrected = history(app)
    assert kinds([registered, recorded, corrected]) == [
        "Registered",
        "ResultsRecorded",
        "ResultCorrected",
    ]
    assert [line["mark"] for line in recorded.lines if line["bloc"] == BC04] == ["12"]
    assert corrected.correction_id == receipt.body["correction_id"]
    assert (corrected.reason, corrected.previous_mark) == ("Erreur de report de la note", "12")
    assert corrected.line == {
        "result_id": ids.result_id(deliberation_id, "C1", BC04),
        "bloc": BC04,
        "session": "2026-06",
        "mark": "8",
        "modality": "ponctuel_ecrit",  # the referential's, for candidate group 1
        "deliberation_id": deliberation_id,
        "deliberated_on": "2026-07-03",
        "justification": None,
    }
    assert [a["bloc"] for a in corrected.withdrawn] == [BC04]
    assert corrected.award_withdrawn == recorded.award
    assert corrected.award["average"] == "11.84"


def test_correcting_to_the_same_grade_is_refused_and_records_nothing(app: RegistryApp) -> None:
    register(app)
    deliberation_id = pv(app, {BC01: "12"})
    before = stored(app)
    with pytest.raises(ConflictingState, match="déjà 12"):
        correct(app, deliberation_id, BC01, "12,0")
    assert stored(app) == before


def test_a_correction_of_a_bloc_its_deliberation_did_not_grade_is_refused(
    app: RegistryApp,
) -> None:
    register(app)
    deliberation_id = pv(app, {BC01: "12"})
    with pytest.raises(ConflictingState, match="ne contient pas de résultat"):
        correct(app, deliberation_id, BC02, "14")


def test_a_center_cannot_correct_another_centers_deliberation(app: RegistryApp) -> None:
    register(app, "C1", A)
    register(app, "C1", B)
    deliberation_id = pv(app, {BC01: "12"}, center=A)
    with pytest.raises(UnknownEntity, match="inconnue pour ce centre"):
        correct(app, deliberation_id, BC01, "8", center=B)
    assert BC01 in app.candidate(A, "C1").acquisitions


# --- idempotency of VAE decisions and corrections ------------------------------------------


def test_a_vae_decision_replayed_with_its_key_gets_the_first_answer_and_records_nothing(
    app: RegistryApp,
) -> None:
    vae_candidate(app)
    first = vae(app, "partielle", [BC01], key="vae-1", digest="d1")
    before = stored(app)
    again = vae(app, "partielle", [BC01], key="vae-1", digest="d1")
    assert (first.created, again.created, again.body) == (True, False, first.body)
    assert stored(app) == before
    assert kinds(history(app, "V1")) == ["Registered", "VaeDecisionRecorded"]


def test_a_vae_decision_key_reused_for_another_request_is_a_conflict(app: RegistryApp) -> None:
    vae_candidate(app)
    vae(app, "partielle", [BC01], key="vae-1", digest="d1")
    before = stored(app)
    with pytest.raises(ConflictingState, match="clé d'idempotence a déjà servi"):
        vae(app, "partielle", [BC02], key="vae-1", digest="d2")
    assert stored(app) == before and sorted(app.candidate(A, "V1").acquisitions) == [BC01]


def test_a_correction_replayed_with_its_key_gets_the_first_answer_and_records_nothing(
    app: RegistryApp,
) -> None:
    register(app)
    deliberation_id = pv(app, every_unit("12"))
    first = correct(app, deliberation_id, BC04, "8", key="fix-1", digest="d1")
    before = stored(app)
    # Without the key this would be refused (the grade is already 8): the key replays.
    again = correct(app, deliberation_id, BC04, "8", key="fix-1", digest="d1")
    assert (first.created, again.created, again.body) == (True, False, first.body)
    assert stored(app) == before
    assert kinds(history(app)) == ["Registered", "ResultsRecorded", "ResultCorrected"]


def test_a_correction_key_reused_for_another_request_is_a_conflict(app: RegistryApp) -> None:
    register(app)
    deliberation_id = pv(app, every_unit("12"))
    correct(app, deliberation_id, BC04, "8", key="fix-1", digest="d1")
    before = stored(app)
    with pytest.raises(ConflictingState, match="clé d'idempotence a déjà servi"):
        correct(app, deliberation_id, BC04, "7", key="fix-1", digest="d2")
    line = app.candidate(A, "C1").results[ids.result_id(deliberation_id, "C1", BC04)]
    assert stored(app) == before and line.mark.to_text() == "8"


def test_a_refused_request_does_not_use_up_its_key(app: RegistryApp) -> None:
    register(app)
    deliberation_id = pv(app, {BC01: "12"})
    with pytest.raises(ConflictingState, match="rien à corriger"):
        correct(app, deliberation_id, BC01, "12", key="fix-1", digest="d1")
    receipt = correct(app, deliberation_id, BC01, "13", key="fix-1", digest="d2")
    assert receipt.created


def test_a_key_is_scoped_by_route_and_by_center(app: RegistryApp) -> None:
    vae_candidate(app, "V1", A)
    vae_candidate(app, "V1", B)
    deliberation_id = pv(app, {BC01: "12"}, number="V1", center=A)
    assert vae(app, "partielle", [BC02], key="k", digest="d1").created
    assert correct(app, deliberation_id, BC01, "14", number="V1", key="k", digest="d2").created
    assert vae(app, "partielle", [BC03], center=B, key="k", digest="d3").created
