"""The notifications service's handlers on typed events, in this process (no NATS): what an
e-mail about an attestation says, from the contract's fields, not from keys of a dict."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import attestations_v1 as att
from contracts import registry_v1 as reg
from contracts.referential import load_certification
from services.notifications.application import NotificationsApp
from services.notifications.domain import Notification
from tests.support.feed import Feeder

A = "0750001A"
TITLE = load_certification("RNCP40705").title  # the real referential's, not a test copy


@pytest.fixture
def app(tmp_path: Path) -> Iterator[NotificationsApp]:
    notifications = NotificationsApp(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "n.db")},
        attestations_url="http://127.0.0.1:8102",
        download_secret=b"k" * 32,
        sender="certibloc <no-reply@certibloc.localhost>",
        mail_domain="certibloc.localhost",
    )
    registry = Feeder(notifications, notifications.registry_handlers(), notifications.before_commit)
    registry.send(
        reg.CandidateRegistered(
            candidate_number="C0001",
            certification="RNCP40705",
            exam_center=A,
            birth_name="Durand",
            given_names=["Léa"],
            email="lea@example.org",
            access_route="formation_continue",
            candidate_group=1,
            registered_at=datetime.now(UTC),
        )
    )
    yield notifications
    notifications.close()


def issued(**changes: object) -> att.AttestationIssued:
    fields: dict[str, object] = {
        "attestation_id": "AAAAAAAAAAAAAAAAAAAAAA",
        "kind": "bloc",
        "code": "RNCP40705BC01",
        "title": "Gérer des relations avec les clients, les usagers et les adhérents",
        "certification": "RNCP40705",
        "certification_title": TITLE,
        "candidate_number": "C0001",
        "exam_center": A,
        "holder_given_names": ["Léa"],
        "holder_family_name": "Durand",
        "issued_at": datetime.now(UTC),
        "verify_url": "http://127.0.0.1:8102/v/AAAAAAAAAAAAAAAAAAAAAA",
        "source_id": "v1",
        **changes,
    }
    return att.AttestationIssued.model_validate(fields)


def mail(app: NotificationsApp, key: str) -> Notification:
    found = app.notification(key)
    assert found is not None
    return found


@pytest.mark.parametrize("carried", [True, False], ids=["title carried", "older event"])
def test_the_mail_names_the_certification_by_its_title(
    app: NotificationsApp, carried: bool
) -> None:
    feed = Feeder(app, app.attestations_handlers(), app.before_commit)
    feed.send(issued() if carried else issued(certification_title=None))
    payload = mail(app, "mail:AAAAAAAAAAAAAAAAAAAAAA:issued").payload
    assert payload["certification_title"] == TITLE
    assert payload["title"].startswith("Gérer des relations")
    assert payload["to_address"] == "lea@example.org"
    assert payload["download_url"].startswith("http://127.0.0.1:8102/v1/attestations/")


def test_the_revocation_mail_names_what_was_revoked(app: NotificationsApp) -> None:
    feed = Feeder(app, app.attestations_handlers(), app.before_commit)
    feed.send(
        att.AttestationRevoked(
            attestation_id="BBBBBBBBBBBBBBBBBBBBBB",
            kind="bloc",
            code="RNCP40705BC01",
            title="Gérer des relations avec les clients, les usagers et les adhérents",
            certification="RNCP40705",
            candidate_number="C0001",
            exam_center=A,
            revoked_at=datetime.now(UTC),
            reason="Erreur de report de note",
            verify_url="http://127.0.0.1:8102/v/BBBBBBBBBBBBBBBBBBBBBB",
        )
    )
    payload = mail(app, "mail:BBBBBBBBBBBBBBBBBBBBBB:revoked").payload
    assert payload["title"].startswith("Gérer des relations")
    assert payload["certification_title"] == TITLE
    assert payload["reason"] == "Erreur de report de note"
    assert payload["download_url"] is None


def test_another_centers_candidate_with_the_same_number_gets_nothing(
    app: NotificationsApp,
) -> None:
    feed = Feeder(app, app.attestations_handlers(), app.before_commit)
    from services.notifications.application import UnknownRecipient

    with pytest.raises(UnknownRecipient):
        feed.send(issued(exam_center="0690002B"))
    assert app.notifications_of("0690002B", "C0001") is None
