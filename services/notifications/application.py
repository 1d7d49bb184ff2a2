"""The notifications application: queues a notification for every attestation event (an
e-mail to the candidate, a webhook to the exam center if it registered one), atomically with
the upstream position; the dispatcher sends them."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.utils import get_topic

from contracts.attestations_v1 import (
    AttestationsRecorded,
    DownloadLinksRevoked,
    HeldAttestation,
    IssuedAttestation,
    RevokedAttestation,
)
from contracts.envelope import CloudEvent
from contracts.referential import load_certification
from contracts.registry_v1 import CandidateRegistered
from services.notifications import email
from services.notifications.domain import Notification, Recipient, Webhook
from services.notifications.webhooks import new_secret
from services.runtime import centers, tokens, tracing
from services.runtime.messages import HandlerTable, Unit
from services.runtime.store import ServiceApplication

DOWNLOAD_LINK_TTL = 90 * 24 * 3600  # a personal link stays usable for 90 days


class UnknownRecipient(LookupError):
    """An attestation event arrived before its candidate's registration (another stream):
    the batch is retried until the registry's consumer caught up."""


class NotificationsApp(ServiceApplication):
    name = "Notifications"
    cached_types = (Recipient,)  # read for every attestation event

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        attestations_url: str,
        download_secret: bytes,
        sender: str,
        mail_domain: str,
    ) -> None:
        super().__init__(env)
        self.attestations_url = attestations_url.rstrip("/")
        self.download_secret = download_secret
        self.sender = sender
        self.mail_domain = mail_domain
        self._given_up = GivenUp(self)

    # --- consuming ---------------------------------------------------------------------------

    def registry_handlers(self) -> HandlerTable:
        table = HandlerTable("registry").on(CandidateRegistered, self._on_registered)
        return centers.handle_key_events(self, table)

    def attestations_handlers(self) -> HandlerTable:
        return (
            HandlerTable("attestations")
            .on(AttestationsRecorded, self._on_recorded)
            .on(DownloadLinksRevoked, self._on_links_revoked)
        )

    def recipient(self, unit: Unit | None, exam_center: str, number: str) -> Recipient | None:
        return self.find_owned(
            unit,
            Recipient.create_id(exam_center, number),
            Recipient.legacy_id(number),
            Recipient,
            exam_center,
        )

    def _on_registered(self, data: CandidateRegistered, _: CloudEvent, unit: Unit) -> None:
        if self.recipient(unit, data.exam_center, data.candidate_number) is not None:
            return
        recipient = Recipient(
            candidate_number=data.candidate_number,
            exam_center=data.exam_center,
            email=data.email,
            given_names=list(data.given_names),
            family_name=data.usage_name or data.birth_name,
        )
        self.stage(unit, recipient)

    def _on_recorded(self, data: AttestationsRecorded, event: CloudEvent, unit: Unit) -> None:
        """One candidate's decision: one e-mail listing what it issued (with personal
        download links, minted when the e-mail is written), one listing what it revoked,
        and one webhook to the center with both."""
        recipient = self._recipient_of(unit, data.exam_center, data.candidate_number)
        decision_key = _decision_key(data)
        mail = _mail_header(recipient, data.certification, data.certification_title)
        mail["decided_on"] = data.decided_on.isoformat()
        mail["language"] = data.preferred_language  # the candidate's, chosen at registration
        ids = _ids(data)
        if data.issued:
            mail["links_epoch"] = data.links_epoch
            items = [
                {**_with_links(a), "route": a.route, "session": a.session}
                | ({"grade_session": a.grade_session} if a.grade_session else {})
                for a in _in_order(data.issued)
            ]
            key = f"mail:{decision_key}:issued"
            self._queue_mail(unit, recipient, key, "issued", mail, items, data.decision_id, ids)
        if data.revoked:
            items = [
                {
                    "kind": a.kind,
                    "code": a.code,
                    "title": a.title,
                    "verify_url": a.verify_url,
                    "reason": a.reason,
                }
                for a in _in_order(data.revoked)
            ]
            key = f"mail:{decision_key}:revoked"
            self._queue_mail(unit, recipient, key, "revoked", mail, items, data.decision_id, ids)
        hook_key = f"hook:{decision_key}"
        if self._has_webhook(unit, recipient.exam_center) and not recipient.knows(hook_key):
            hook = Notification(
                delivery_key=hook_key,
                channel="webhook",
                candidate_number=recipient.candidate_number,
                exam_center=recipient.exam_center,
                attestation_id="",
                payload={
                    "type": event.type,
                    "timestamp": _now(),
                    "data": data.model_dump(mode="json"),
                },
                queued_at=_now(),
                traceparent=tracing.current_traceparent(),
                decision_id=data.decision_id,
                attestation_ids=ids,
            )
            recipient.note(hook_key)
            self.stage(unit, hook, recipient)

    def _on_links_revoked(self, data: DownloadLinksRevoked, _: CloudEvent, unit: Unit) -> None:
        """The candidate's links were revoked; asked for, an e-mail with new ones (for the
        new epoch) to every attestation in force."""
        if not data.send_new_links or not data.attestations:
            return
        recipient = self._recipient_of(unit, data.exam_center, data.candidate_number)
        mail = _mail_header(recipient, data.certification, data.certification_title)
        mail["links_epoch"] = data.links_epoch
        mail["language"] = data.preferred_language
        held = sorted(data.attestations, key=lambda a: (a.kind == "certification", a.code))
        items = [_with_links(a) for a in held][: email.ITEMS_MAX]
        about = f"links\n{data.links_epoch}\n{data.exam_center}\n{data.candidate_number}"
        key = f"mail:{_short_key(about)}:links_renewed"
        ids = [a.attestation_id for a in held]
        self._queue_mail(unit, recipient, key, "links_renewed", mail, items, None, ids)

    def _queue_mail(
        self,
        unit: Unit,
        recipient: Recipient,
        key: str,
        what: str,
        mail: dict[str, Any],
        items: list[dict[str, Any]],
        decision_id: str | None,
        attestation_ids: list[str],
    ) -> None:
        if recipient.knows(key):
            return
        notification = Notification(
            delivery_key=key,
            channel="email",
            candidate_number=recipient.candidate_number,
            exam_center=recipient.exam_center,
            attestation_id="",
            payload={**mail, "event": what, "items": items},
            queued_at=_now(),
            traceparent=tracing.current_traceparent(),
            decision_id=decision_id,
            attestation_ids=attestation_ids,
        )
        recipient.note(key)
        self.stage(unit, notification, recipient)

    def _recipient_of(self, unit: Unit, exam_center: str, number: str) -> Recipient:
        recipient = self.recipient(unit, exam_center, number)
        if recipient is None:
            # Another stream: the registry's consumer may not have caught up yet. Retried.
            raise UnknownRecipient(f"{exam_center}/{number}")
        return recipient

    def _has_webhook(self, unit: Unit, exam_center: str) -> bool:
        # Looked up once per center and batch: centers change their webhook rarely.
        memo: dict[str, bool] = unit.saved_kwargs.setdefault("webhooks", {})
        if exam_center not in memo:
            memo[exam_center] = self.exists(Webhook.create_id(exam_center))
        return memo[exam_center]

    def before_commit(self, unit: Unit) -> None:
        unit.saved_kwargs.pop("webhooks", None)
        for aggregate in unit.aggregates.values():
            if isinstance(aggregate, Recipient):
                aggregate.flush()

    # --- commands ----------------------------------------------------------------------------

    def register_webhook(self, exam_center: str, url: str) -> tuple[Webhook, str]:
        """(webhook, secret): the secret is returned here once, to be shown once."""
        secret = new_secret()
        webhook = self.get_optional(Webhook.create_id(exam_center), Webhook)
        if webhook is None:
            webhook = Webhook(exam_center=exam_center, url=url, secret=secret, at=_now())
        else:
            webhook.replace(url=url, secret=secret, at=_now())
        self.save(webhook)
        return webhook, secret

    def webhook(self, exam_center: str) -> Webhook | None:
        return self.get_optional(Webhook.create_id(exam_center), Webhook)

    def replay(self, exam_center: str, delivery_key: str) -> Notification | None:
        found = self.notification(delivery_key)
        if found is None or found.exam_center != exam_center:
            return None
        if found.state in ("gave_up", "failed"):
            found.replay(at=_now())
            self.save(found)
        return found

    # --- queries -----------------------------------------------------------------------------

    def notification(self, delivery_key: str) -> Notification | None:
        return self.get_optional(Notification.create_id(delivery_key), Notification)

    def notifications_of(
        self, exam_center: str, candidate_number: str
    ) -> list[Notification] | None:
        recipient = self.recipient(None, exam_center, candidate_number)
        if recipient is None:
            return None
        found = [self.notification(k) for k in recipient.delivery_keys]
        return [n for n in found if n is not None]

    def authenticate_center(self, key: str) -> str | None:
        return centers.authenticate(self, key)

    def given_up(self, exam_center: str) -> list[Notification]:
        """The center's deliveries given up (to replay), from the store: whichever process
        asks, with or without a dispatcher of its own."""
        found = [self.notification(key) for key in self._given_up.of(exam_center)]
        return [n for n in found if n is not None and n.state == "gave_up"]


def _now() -> str:
    return datetime.now(UTC).isoformat()


class GivenUp:
    """Which deliveries were given up, by center: a read model kept from the service's own
    log (a give-up adds its key, a replay removes it), read incrementally, and only those two
    kinds of event (rare), by their topic."""

    TOPICS = (get_topic(Notification.GaveUp), get_topic(Notification.Replayed))
    BATCH = 1000

    def __init__(self, app: ServiceApplication) -> None:
        self.app = app
        self._cursor = 0
        self._keys: dict[UUID, tuple[str, str]] = {}  # aggregate id -> (center, delivery key)
        self._lock = threading.Lock()

    def of(self, exam_center: str) -> list[str]:
        with self._lock:
            self._refresh()
            return sorted(key for center, key in self._keys.values() if center == exam_center)

    def _refresh(self) -> None:
        recorder = self.app.process_recorder
        until = recorder.max_notification_id() or 0
        while self._cursor < until:
            batch = recorder.select_notifications(
                start=self._cursor,
                limit=self.BATCH,
                stop=until,
                topics=self.TOPICS,
                inclusive_of_start=False,
            )
            for stored in batch:
                e = self.app.mapper.to_domain_event(stored)
                facts: Any = e  # attributes made by eventsourcing at run time
                if isinstance(e, Notification.GaveUp):
                    self._keys[e.originator_id] = (facts.exam_center, facts.delivery_key)
                else:  # replayed: it is queued again
                    self._keys.pop(e.originator_id, None)
            self._cursor = batch[-1].id if len(batch) == self.BATCH else until


Attested = TypeVar("Attested", IssuedAttestation, RevokedAttestation)


def _in_order(attestations: Sequence[Attested]) -> list[Attested]:
    """Blocs in code order, then the certification: how a reader expects the list."""
    return sorted(attestations, key=lambda a: (a.kind == "certification", a.code))


def _decision_key(data: AttestationsRecorded) -> str:
    """Short and stable (it is the e-mail's Message-ID and the webhook-id, and goes in a
    header): 128 bits of the decision and the candidate it is about."""
    return _short_key(f"{data.decision_id}\n{data.exam_center}\n{data.candidate_number}")


def _short_key(about: str) -> str:
    digest = hashlib.sha256(about.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _mail_header(recipient: Recipient, certification: str, title: str) -> dict[str, Any]:
    return {
        "certification": certification,
        "certification_title": title,
        "to_address": recipient.email,
        "holder_name": recipient.display_name,
    }


def _with_links(a: IssuedAttestation | HeldAttestation) -> dict[str, Any]:
    """An attestation the e-mail gives personal links to. The links' tokens are minted when
    the e-mail is written (``personal_links``), never stored."""
    return {
        "kind": a.kind,
        "code": a.code,
        "title": a.title,
        "verify_url": a.verify_url,
        "attestation_id": a.attestation_id,
        "personal_links": True,
    }


def links_expire_on(minted_at: float) -> date:
    """The day personal links minted at ``minted_at`` stop working, in France."""
    expires = datetime.fromtimestamp(minted_at + DOWNLOAD_LINK_TTL, UTC)
    return expires.astimezone(ZoneInfo("Europe/Paris")).date()


def space_link(secret: bytes, attestations_url: str, subject: str, epoch: int, now: float) -> str:
    """The candidate's personal space, with a token minted now (it opens every attestation
    they hold, and is revoked with their other links)."""
    token = tokens.mint(secret, subject, None, epoch, DOWNLOAD_LINK_TTL, now=now)
    return f"{attestations_url}/space?token={token}"


def personal_links(
    secret: bytes, attestations_url: str, subject: str, attestation_id: str, epoch: int, now: float
) -> tuple[str, str]:
    """(PDF link, credential link) of one attestation, each with a token minted now."""
    token = tokens.mint(secret, subject, attestation_id, epoch, DOWNLOAD_LINK_TTL, now=now)
    base = f"{attestations_url}/v1/attestations/{attestation_id}"
    return f"{base}/pdf?token={token}", f"{base}/credential?token={token}"


def _ids(data: AttestationsRecorded) -> list[str]:
    return [a.attestation_id for a in data.issued] + [a.attestation_id for a in data.revoked]


@cache
def certification_title(code: str) -> str:
    """The certification's title from the referential (events before 2026-12 carry only its
    code); the code itself if no referential holds it."""
    try:
        return load_certification(code).title
    except KeyError:
        return code


def view(n: Notification) -> dict[str, Any]:
    return {
        "delivery_key": n.delivery_key,
        "channel": n.channel,
        "candidate_number": n.candidate_number,
        "decision_id": n.decision_id,
        "attestation_ids": n.attestation_ids,
        "event": n.payload.get("event") or n.payload.get("type"),
        "state": n.state,
        "attempts": n.attempts,
        "queued_at": n.queued_at,
        "sent_at": n.sent_at,
        "last_error": n.last_error,
        "history": n.history,
    }
