"""Bookkeeping against a real SQLite store shared by two replicas: the dispatcher records claims
and outcomes once and leaves a retaken claim to its new owner; the consumer's cached recipients
never hide a replica's write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import IntegrityError, OperationalError

from services.notifications.application import NotificationsApp
from services.notifications.dispatcher import Dispatcher
from services.notifications.domain import Notification, Recipient
from services.notifications.smtp import SmtpPool, SmtpSettings
from services.notifications.webhooks import Outcome

OK = Outcome(True, False, None, "accepté par le serveur SMTP")


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


def new_app(db: Path) -> NotificationsApp:
    return NotificationsApp(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)},
        attestations_url="http://127.0.0.1:8102",
        download_secret=b"k" * 32,
        sender="certibloc <no-reply@certibloc.localhost>",
        mail_domain="certibloc.localhost",
    )


def queue(app: NotificationsApp, *keys: str) -> None:
    app.save(
        *(
            Notification(
                delivery_key=key,
                channel="webhook",
                candidate_number="C0001",
                exam_center="0750001A",
                attestation_id=key.split(":")[1],
                payload={},
                queued_at="2026-07-03T10:00:00+00:00",
            )
            for key in keys
        )
    )


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Dispatcher, Dispatcher, Clock]]:
    clock = Clock()
    smtp = SmtpPool(SmtpSettings(host="127.0.0.1", port=1))  # never used: nothing is sent
    http = httpx.AsyncClient()
    apps = [new_app(tmp_path / "notifications.sqlite") for _ in range(2)]
    a, b = (
        Dispatcher(app, smtp, http, claim_timeout=30, worker=name, clock=clock)
        for app, name in zip(apps, ("a", "b"), strict=True)
    )
    yield a, b, clock
    for app in apps:
        app.close()


def test_outcomes_of_a_batch_are_recorded_once(
    replicas: tuple[Dispatcher, Dispatcher, Clock],
) -> None:
    a, b, _ = replicas
    queue(a.app, "hook:1:issued", "hook:2:issued")
    a.refresh()
    claimed = a._claim(sorted(a.due()))
    assert [n.delivery_key for n in claimed] == ["hook:1:issued", "hook:2:issued"]
    b.refresh()
    assert b.due() == []  # claimed by a, not yet timed out
    a._record([(n, OK) for n in claimed])
    a.refresh()
    b.refresh()
    for key in ("hook:1:issued", "hook:2:issued"):
        stored = a.app.notification(key)
        assert stored is not None and stored.state == "sent" and stored.attempts == 1
        assert key not in b.tracked  # sent: nothing left to do, forgotten
    assert a.due() == b.due() == []


def test_a_retaken_claim_is_left_to_its_new_owner_and_the_others_are_recorded(
    replicas: tuple[Dispatcher, Dispatcher, Clock],
) -> None:
    a, b, clock = replicas
    queue(a.app, "hook:1:issued", "hook:2:issued", "hook:3:issued")
    a.refresh()
    mine = a._claim(sorted(a.due()))
    assert len(mine) == 3
    # a looks dead for longer than the claim timeout: b retakes one of its claims.
    clock.now += 31
    b.refresh()
    (retaken,) = b._claim(["hook:2:issued"])
    assert retaken.attempts == 2
    a._inflight.update(n.delivery_key for n in mine)  # a is still sending them
    a.refresh()  # a reads b's claim while sending: its own objects must not change
    assert [n.attempts for n in mine] == [1, 1, 1]
    # a wakes up and records its three outcomes in one batch: that save fails on hook 2, and
    # the other two must still be recorded (the failed save took their pending events).
    a._record([(n, OK) for n in mine])
    states = {k: a.app.notification(k) for k in ("hook:1:issued", "hook:2:issued", "hook:3:issued")}
    assert {k: (n.state, n.attempts) for k, n in states.items() if n} == {
        "hook:1:issued": ("sent", 1),
        "hook:2:issued": ("attempting", 2),
        "hook:3:issued": ("sent", 1),
    }
    b._record([(retaken, OK)])
    stored = b.app.notification("hook:2:issued")
    assert stored is not None and stored.state == "sent" and stored.attempts == 2
    a.refresh()
    assert "hook:2:issued" not in a.tracked  # sent by b
    assert a.due() == []


def test_cached_recipient_behind_a_replica_fails_on_version_then_is_read_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "notifications.sqlite"
    a, b = new_app(db), new_app(db)
    try:
        rid = Recipient.create_id("0750001A", "C0001")
        unit: ProcessingEvent[UUID] = ProcessingEvent()
        a.stage(unit, Recipient("C0001", "0750001A", "lea@example.org", ["Léa"], "Durand"))
        a.record(unit, None)  # a now holds the recipient in its cache, at version 1
        # Replica b notes a delivery on it: version 2 in the store.
        other: ProcessingEvent[UUID] = ProcessingEvent()
        seen = b.get_in(other, rid, Recipient)
        assert seen is not None
        seen.note("mail:1:issued")
        seen.flush()
        b.record(other, None)
        # a's cached copy is behind: its write fails on the version and changes nothing...
        stale: ProcessingEvent[UUID] = ProcessingEvent()
        cached = a.get_in(stale, rid, Recipient)
        assert cached is not None and cached.version == 1 and not cached.knows("mail:1:issued")
        cached.note("mail:2:issued")
        cached.flush()
        with pytest.raises(IntegrityError):
            a.record(stale, None)
        # ...and the retry reads the store, sees b's delivery and records its own.
        retry: ProcessingEvent[UUID] = ProcessingEvent()
        fresh = a.get_in(retry, rid, Recipient)
        assert fresh is not None and fresh.version == 2 and fresh.knows("mail:1:issued")
        fresh.note("mail:2:issued")
        fresh.flush()
        a.record(retry, None)
        stored = b.get_optional(rid, Recipient)
        assert stored is not None
        assert stored.delivery_keys == ["mail:1:issued", "mail:2:issued"]
    finally:
        a.close()
        b.close()


async def test_an_address_our_headers_cannot_carry_is_given_up_at_once(
    replicas: tuple[Dispatcher, Dispatcher, Clock],
) -> None:
    a, _, _ = replicas
    mail = Notification(
        delivery_key="mail:1:issued",
        channel="email",
        candidate_number="C0001",
        exam_center="0750001A",
        attestation_id="1",
        payload={
            "event": "issued",
            "to_address": "léa@example.org",  # RFC 6531 local part: needs SMTPUTF8 headers
            "holder_name": "Léa Durand",
            "kind": "bloc",
            "code": "RNCP40705BC01",
            "title": "Gérer des relations avec les clients",
            "certification": "BAC PRO AGOrA",
            "verify_url": "http://127.0.0.1:8102/v/1",
            "download_url": None,
            "credential_url": None,
            "reason": None,
        },
        queued_at="2026-07-03T10:00:00+00:00",
    )
    outcome = await a._send(mail)  # before any SMTP connection is tried
    assert (outcome.ok, outcome.retryable) == (False, False)
    assert outcome.detail.startswith("adresse ou contenu inutilisable")


def test_a_failed_write_leaves_nothing_ahead_of_the_store(
    replicas: tuple[Dispatcher, Dispatcher, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _, clock = replicas
    queue(a.app, "hook:1:issued")
    a.refresh()
    (claimed,) = a._claim(a.due())
    a.refresh()

    def unreachable(*_: object, **__: object) -> None:
        raise OperationalError("the database went away")

    monkeypatch.setattr(a.app, "save", unreachable)
    with pytest.raises(OperationalError):
        a._record([(claimed, OK)])  # the write fails after save() drained the events
    monkeypatch.undo()
    # The claim times out; the next claim and outcome follow the stored version, no gap.
    clock.now += 31
    a.refresh()
    (again,) = a._claim(a.due())
    assert again.attempts == 2 and again.version == 3
    a._record([(again, OK)])
    stored = a.app.notification("hook:1:issued")
    assert stored is not None and stored.state == "sent" and stored.version == 4


def test_a_sender_we_cannot_write_fails_the_start(tmp_path: Path) -> None:
    app = new_app(tmp_path / "n.sqlite")
    app.sender = "a@example.org, b@example.org"
    try:
        with pytest.raises(ValueError, match="one address"):
            Dispatcher(app, SmtpPool(SmtpSettings(host="127.0.0.1", port=1)), httpx.AsyncClient())
    finally:
        app.close()
