"""The attestations service's handlers on typed registry events, in this process (no NATS):
one candidate's decision issued (and revoked) as one unit, candidates scoped by center,
records written before that scoping still found, and what can never be applied refused for
the dead-letter stream rather than retried forever."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from contracts import registry_v1 as v1
from services.attestations.application import AttestationsApp
from services.attestations.composition import build_attestations
from services.attestations.domain.aggregates import Holder
from services.attestations.settings import AttestationsSettings
from services.runtime.messages import Rejected
from tests.support.feed import Feeder

A, B = "0750001A", "0690002B"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[AttestationsApp]:
    attestations, _ = build_attestations(AttestationsSettings(var_dir=tmp_path))
    yield attestations
    attestations.close()


@pytest.fixture
def feed(app: AttestationsApp) -> Feeder:
    return Feeder(app, app.registry_handlers(), app.before_commit)


def registered(center: str, number: str, family: str) -> v1.CandidateRegistered:
    return v1.CandidateRegistered(
        candidate_number=number,
        certification="RNCP40705",
        exam_center=center,
        birth_name=family,
        given_names=["Léa"],
        email=f"{family.lower()}@example.org",
        access_route="formation_continue",
        candidate_group=1,
        registered_at=datetime.now(UTC),
    )


def _bloc(center: str, number: str, bloc: str) -> v1.ValidatedBloc:
    return v1.ValidatedBloc(
        validation_id=f"v-{center}-{number}-{bloc}",
        bloc=bloc,
        optional=False,
        via="grade",
        grade="12",
        session="2026-06",
        validated_on=date(2026, 7, 3),
        source_id="d1",
    )


def validated(
    center: str,
    number: str,
    bloc: str = "RNCP40705BC01",
    *more: str,
    award: bool = False,
    decision_id: str = "d1",
) -> v1.DecisionRecorded:
    """A PV's decision for one candidate, validating ``bloc`` and ``more``."""
    return v1.DecisionRecorded(
        decision_id=decision_id,
        decision="deliberation",
        candidate_number=number,
        exam_center=center,
        certification="RNCP40705",
        access_route="formation_continue",
        route="exam",
        decided_on=date(2026, 7, 3),
        session="2026-06",
        validated=[_bloc(center, number, b) for b in (bloc, *more)],
        award=v1.AwardDecided(
            award_id=f"a-{number}",
            via="exam",
            session="2026-06",
            awarded_on=date(2026, 7, 3),
            average="12",
            mention="assez_bien",
            source_id=decision_id,
        )
        if award
        else None,
    )


def test_the_same_number_at_two_centers_is_two_holders(app: AttestationsApp, feed: Feeder) -> None:
    feed.send(registered(A, "C0001", "Durand"))
    feed.send(registered(B, "C0001", "Martin"))
    feed.send(validated(B, "C0001"))
    assert app.attestations_of(A, "C0001") == []
    (issued,) = app.attestations_of(B, "C0001") or []
    assert issued.holder["family_name"] == "Martin" and issued.exam_center == B


def test_a_holder_recorded_before_scoping_keeps_its_attestations_coming(
    app: AttestationsApp, feed: Feeder
) -> None:
    legacy = Holder._create(
        Holder.Registered,
        id=Holder.legacy_id("L0001"),
        candidate_number="L0001",
        exam_center=A,
        given_names=["Léa"],
        family_name="Durand",
        birth_name=None,
        email="lea@example.org",
        access_route="formation_continue",
        certification="RNCP40705",
    )
    app.save(legacy)
    feed.send(registered(A, "L0001", "Durand"))  # replayed registration: nothing new
    feed.send(validated(A, "L0001"))
    assert [a.code for a in app.attestations_of(A, "L0001") or []] == ["RNCP40705BC01"]
    assert app.holder(A, "L0001") is not None and app.holder(A, "L0001").id == legacy.id  # type: ignore[union-attr]
    # The old record is A's: another center's candidate L0001 is someone else.
    assert app.attestations_of(B, "L0001") is None
    feed.send(registered(B, "L0001", "Martin"))
    assert app.attestations_of(B, "L0001") == []


def test_an_event_for_a_candidate_never_registered_is_rejected(feed: Feeder) -> None:
    with pytest.raises(Rejected, match="no registration seen"):
        feed.send(validated(A, "NOBODY"))


def test_a_bloc_the_referential_does_not_hold_is_rejected(feed: Feeder) -> None:
    feed.send(registered(A, "C0002", "Durand"))
    with pytest.raises(Rejected, match="no bloc RNCP40705BC99"):
        feed.send(validated(A, "C0002", bloc="RNCP40705BC99"))


def test_data_that_does_not_fit_the_contract_is_dead_before_any_handler(feed: Feeder) -> None:
    payload, subject = feed.encode(registered(A, "C0003", "Durand"))
    tampered = payload.replace(b'"Durand"', b'"Dur\\u202eand"')
    message = feed.table.parse(tampered, subject)
    assert message.handler is None and message.dead is not None
    assert message.dead[0] == "invalid" and "birth_name" in message.dead[1]
    assert message.in_chain  # from the producer: its position passes


def test_a_holder_named_as_the_old_api_allowed_is_still_published(
    app: AttestationsApp, feed: Feeder
) -> None:
    """Names the API refuses today (parentheses, 150 characters) were taken before: their
    attestations must still be publishable, valid for their consumers."""
    from contracts.attestations_v1 import AttestationsRecorded
    from services.attestations.domain.aggregates import Holder
    from services.attestations.translation import translator

    legacy = registered(A, "O0001", "Martin")
    old = legacy.model_copy(update={"given_names": ["Marie (dite Maïté)", "A" * 150]})
    feed.send(old)
    feed.send(validated(A, "O0001"))
    (attestation,) = app.attestations_of(A, "O0001") or []
    attested = next(
        app.mapper.to_domain_event(n)
        for n in app.process_recorder.select_notifications(start=0, limit=100)
        if isinstance(app.mapper.to_domain_event(n), Holder.DecisionAttested)
    )
    (out,) = translator(app.links.verify)(attested)
    published = AttestationsRecorded.model_validate(out.event.model_dump(mode="json"))
    assert published.holder_given_names[0] == "Marie (dite Maïté)"
    assert attestation.holder["given_names"][1] == "A" * 150


def test_one_decision_is_issued_as_one_unit_and_published_as_one_message(
    app: AttestationsApp, feed: Feeder
) -> None:
    from services.attestations.translation import translator

    blocs = [f"RNCP40705BC{n:02d}" for n in range(1, 13)]
    feed.send(registered(A, "D0001", "Durand"))
    before = app.process_recorder.max_notification_id() or 0
    feed.send(validated(A, "D0001", *blocs, award=True))
    stored = [
        app.mapper.to_domain_event(n)
        for n in app.process_recorder.select_notifications(
            start=before, limit=100, inclusive_of_start=False
        )
    ]
    names = [type(e).__name__ for e in stored]
    assert names.count("Issued") == 13  # each verifiable on its own id
    assert names.count("DecisionAttested") == 1
    published = [out for e in stored for out in translator(app.links.verify)(e)]
    (message,) = published
    data = message.event.model_dump(mode="json")
    assert message.event_type == "fr.certibloc.attestations.attestations-recorded.v1"
    assert message.key == f"{A}/D0001"
    assert [a["code"] for a in data["issued"]] == [*blocs, "RNCP40705"]
    assert data["decision_id"] == "d1" and data["decided_on"] == "2026-07-03"
    assert data["holder_family_name"] == "Durand" and data["revoked"] == []


def test_a_correction_revokes_and_reissues_in_one_message(
    app: AttestationsApp, feed: Feeder
) -> None:
    from services.attestations.translation import translator

    feed.send(registered(A, "R0001", "Durand"))
    feed.send(validated(A, "R0001", "RNCP40705BC01", "RNCP40705BC02", award=True))
    first = {a.code: a for a in app.attestations_of(A, "R0001") or []}
    correction = v1.DecisionRecorded(
        decision_id="k1",
        decision="correction",
        candidate_number="R0001",
        exam_center=A,
        certification="RNCP40705",
        access_route="formation_continue",
        route="exam",
        decided_on=date(2026, 7, 3),
        session="2026-06",
        corrects="d1",
        reason="Erreur de report de note",
        withdrawn=[
            v1.WithdrawnBloc(validation_id=f"v-{A}-R0001-RNCP40705BC01", bloc="RNCP40705BC01")
        ],
        award_withdrawn="a-R0001",
    )
    before = app.process_recorder.max_notification_id() or 0
    feed.send(correction)
    statuses = {a.code: a.status for a in app.attestations_of(A, "R0001") or []}
    assert statuses == {
        "RNCP40705BC01": "revoked",
        "RNCP40705BC02": "valid",
        "RNCP40705": "revoked",
    }
    stored = app.process_recorder.select_notifications(
        start=before, limit=100, inclusive_of_start=False
    )
    (message,) = [
        out for n in stored for out in translator(app.links.verify)(app.mapper.to_domain_event(n))
    ]
    data = message.event.model_dump(mode="json")
    assert [r["code"] for r in data["revoked"]] == ["RNCP40705BC01", "RNCP40705"]
    assert {r["reason"] for r in data["revoked"]} == {"Erreur de report de note"}
    assert data["revoked"][0]["attestation_id"] == first["RNCP40705BC01"].public_id


def test_status_lists_are_allocated_per_partition(tmp_path: Path) -> None:
    """Partitions applied side by side (by several replicas) never share an allocator: each
    has its own lists, interleaved in the numbering."""
    from services.attestations.domain.aggregates import StatusAllocator

    attestations, _ = build_attestations(AttestationsSettings(var_dir=tmp_path, partitions=4))
    try:
        feed = Feeder(attestations, attestations.registry_handlers(), attestations.before_commit)
        for k in range(8):
            feed.send(registered(A, f"P{k:04d}", "Durand"))
            feed.send(validated(A, f"P{k:04d}"))
        lists = {
            a.status_list
            for k in range(8)
            for a in attestations.attestations_of(A, f"P{k:04d}") or []
        }
        owners = {StatusAllocator.list_owner(n)[0] for n in lists}
        assert len(owners) > 1 and lists == {1 + p for p in owners}
        for n in lists:
            assert attestations.status_list_credential(n) is not None
        assert attestations.status_list_credential(1 + 256 * 3) is None  # not reached yet
    finally:
        attestations.close()
