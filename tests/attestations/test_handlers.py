"""The attestations service's handlers on typed registry events, in this process (no NATS):
candidates scoped by center, records written before that scoping still found, and what can
never be applied refused for the dead-letter stream rather than retried forever."""

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


def validated(center: str, number: str, bloc: str = "RNCP40705BC01") -> v1.BlocValidated:
    return v1.BlocValidated(
        validation_id=f"v-{center}-{number}-{bloc}",
        candidate_number=number,
        certification="RNCP40705",
        bloc=bloc,
        optional=False,
        via="grade",
        grade="12",
        session="2026-06",
        validated_on=date(2026, 7, 3),
        source_id="d1",
        exam_center=center,
        access_route="formation_continue",
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
    from contracts.attestations_v1 import AttestationIssued
    from services.attestations.domain.aggregates import Attestation
    from services.attestations.translation import translator

    legacy = registered(A, "O0001", "Martin")
    old = legacy.model_copy(update={"given_names": ["Marie (dite Maïté)", "A" * 150]})
    feed.send(old)
    feed.send(validated(A, "O0001"))
    (attestation,) = app.attestations_of(A, "O0001") or []
    issued = next(
        app.mapper.to_domain_event(n)
        for n in app.process_recorder.select_notifications(start=0, limit=100)
        if isinstance(app.mapper.to_domain_event(n), Attestation.Issued)
    )
    (out,) = translator(app.links.verify)(issued)
    assert (
        AttestationIssued.model_validate(out.event.model_dump(mode="json")).holder_given_names[0]
        == "Marie (dite Maïté)"
    )
    assert attestation.holder["given_names"][1] == "A" * 150
