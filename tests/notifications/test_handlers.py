"""The notifications service's handlers on typed events, in this process (no NATS): what an
e-mail about an attestation says, from the contract's fields, not from keys of a dict."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from contracts import attestations_v1 as att
from contracts import registry_v1 as reg
from contracts.referential import load_certification
from services.notifications.application import NotificationsApp, personal_links
from services.notifications.domain import Notification
from services.runtime import tokens
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


def recorded(**changes: object) -> att.AttestationsRecorded:
    """One decision's attestations: BC02 and BC01 issued (out of order), nothing revoked."""
    fields: dict[str, object] = {
        "decision_id": "d1",
        "decision": "deliberation",
        "decided_on": date(2026, 7, 3),
        "candidate_number": "C0001",
        "exam_center": A,
        "certification": "RNCP40705",
        "certification_title": TITLE,
        "holder_given_names": ["Léa"],
        "holder_family_name": "Durand",
        "issued": [
            _issued("BBBBBBBBBBBBBBBBBBBBBB", "RNCP40705BC02"),
            _issued("AAAAAAAAAAAAAAAAAAAAAA", "RNCP40705BC01"),
        ],
        "revoked": [],
        "recorded_at": datetime.now(UTC),
        **changes,
    }
    return att.AttestationsRecorded.model_validate(fields)


def _issued(attestation_id: str, code: str) -> att.IssuedAttestation:
    return att.IssuedAttestation(
        attestation_id=attestation_id,
        kind="bloc",
        code=code,
        title=f"Le bloc {code[-4:]}",
        verify_url=f"http://127.0.0.1:8102/v/{attestation_id}",
        source_id=f"v-{code}",
    )


def mails(app: NotificationsApp) -> list[Notification]:
    return [n for n in app.notifications_of(A, "C0001") or [] if n.channel == "email"]


def test_one_mail_lists_every_attestation_of_a_decision(app: NotificationsApp) -> None:
    feed = Feeder(app, app.attestations_handlers(), app.before_commit)
    feed.send(recorded())
    (mail,) = mails(app)
    payload = mail.payload
    assert payload["event"] == "issued" and payload["certification_title"] == TITLE
    assert payload["decided_on"] == "2026-07-03" and payload["to_address"] == "lea@example.org"
    assert [i["code"] for i in payload["items"]] == ["RNCP40705BC01", "RNCP40705BC02"]
    # The personal links' tokens are minted when the e-mail is written, never stored.
    assert "token" not in orjson.dumps(payload).decode()
    assert all(item["personal_links"] for item in payload["items"])
    assert [i["attestation_id"] for i in payload["items"]] == [
        "AAAAAAAAAAAAAAAAAAAAAA",
        "BBBBBBBBBBBBBBBBBBBBBB",
    ]
    assert payload["links_epoch"] == 0
    assert mail.decision_id == "d1"
    assert set(mail.attestation_ids) == {"AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB"}
    assert len(mail.delivery_key) <= 52  # the e-mail's fast writer takes headers this long
    feed.send(recorded())  # the same decision again (a replay): nothing new
    assert len(mails(app)) == 1


def test_a_decision_that_revokes_and_issues_sends_two_mails(app: NotificationsApp) -> None:
    feed = Feeder(app, app.attestations_handlers(), app.before_commit)
    revoked = att.RevokedAttestation(
        attestation_id="CCCCCCCCCCCCCCCCCCCCCC",
        kind="bloc",
        code="RNCP40705BC03",
        title="Administrer le personnel",
        verify_url="http://127.0.0.1:8102/v/CCCCCCCCCCCCCCCCCCCCCC",
        reason="Erreur de report de note",
    )
    feed.send(recorded(decision="correction", revoked=[revoked]))
    by_event = {n.payload["event"]: n.payload for n in mails(app)}
    assert set(by_event) == {"issued", "revoked"}
    (item,) = by_event["revoked"]["items"]
    assert item["reason"] == "Erreur de report de note" and "download_url" not in item


def test_another_centers_candidate_with_the_same_number_gets_nothing(
    app: NotificationsApp,
) -> None:
    feed = Feeder(app, app.attestations_handlers(), app.before_commit)
    from services.notifications.application import UnknownRecipient

    with pytest.raises(UnknownRecipient):
        feed.send(recorded(exam_center="0690002B"))
    assert app.notifications_of("0690002B", "C0001") is None


def test_links_minted_for_one_attestation_and_the_epoch() -> None:
    subject = tokens.holder_subject(A, "C0001")
    pdf, credential = personal_links(
        b"k" * 32, "http://127.0.0.1:8102", subject, "AAAAAAAAAAAAAAAAAAAAAA", 3, now=1e9
    )
    assert pdf.startswith("http://127.0.0.1:8102/v1/attestations/AAAAAAAAAAAAAAAAAAAAAA/pdf?")
    token = pdf.split("token=")[1]
    assert credential.endswith(f"/credential?token={token}")
    grant = tokens.read(b"k" * 32, token, now=1e9 + 1)
    assert grant is not None
    assert grant.opens(subject, "AAAAAAAAAAAAAAAAAAAAAA", 3)
    assert not grant.opens(subject, "BBBBBBBBBBBBBBBBBBBBBB", 3)  # another attestation
    assert not grant.opens(subject, "AAAAAAAAAAAAAAAAAAAAAA", 4)  # revoked since
    assert not grant.opens(tokens.holder_subject(A, "C0002"), "AAAAAAAAAAAAAAAAAAAAAA", 3)
    assert tokens.read(b"x" * 32, token, now=1e9 + 1) is None  # another secret
    assert tokens.read(b"k" * 32, token, now=1e9 + 91 * 86400) is None  # expired
    assert tokens.read(b"k" * 32, token[:-2] + "AA", now=1e9) is None  # forged


def links_revoked(**changes: object) -> att.DownloadLinksRevoked:
    fields: dict[str, object] = {
        "candidate_number": "C0001",
        "exam_center": A,
        "certification": "RNCP40705",
        "certification_title": TITLE,
        "links_epoch": 1,
        "revoked_at": datetime.now(UTC),
        "send_new_links": True,
        "attestations": [
            att.HeldAttestation(
                attestation_id=a,
                kind="bloc",
                code=c,
                title=f"Le bloc {c[-4:]}",
                verify_url=f"http://127.0.0.1:8102/v/{a}",
            )
            for a, c in (
                ("BBBBBBBBBBBBBBBBBBBBBB", "RNCP40705BC02"),
                ("AAAAAAAAAAAAAAAAAAAAAA", "RNCP40705BC01"),
            )
        ],
        **changes,
    }
    return att.DownloadLinksRevoked.model_validate(fields)


def test_revoked_links_asked_again_give_one_mail_with_new_links(app: NotificationsApp) -> None:
    feed = Feeder(app, app.attestations_handlers(), app.before_commit)
    feed.send(links_revoked(send_new_links=False, attestations=[]))
    assert mails(app) == []  # revoked only: nothing to tell
    feed.send(links_revoked())
    (mail,) = mails(app)
    payload = mail.payload
    assert payload["event"] == "links_renewed" and payload["links_epoch"] == 1
    assert [i["code"] for i in payload["items"]] == ["RNCP40705BC01", "RNCP40705BC02"]
    assert "token" not in orjson.dumps(payload).decode()
    feed.send(links_revoked())  # redelivered: nothing new
    assert len(mails(app)) == 1
    feed.send(links_revoked(links_epoch=2))  # revoked again, new links again
    assert len(mails(app)) == 2
