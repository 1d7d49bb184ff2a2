"""Sends queued notifications, never blocking the consumer and never losing one.

It follows the service's own notification log to know every notification's state (queued,
attempting, sent, failed, gave up), then for each one that is due: records a claim
(``Attempting``, an event with an expected version: two replicas cannot both claim), sends,
and records the outcome. A claim left behind by a crash is taken over after ``claim_timeout``
and the message is sent again under the same delivery key — the e-mail's Message-ID and the
webhook-id — so the receiver recognises it. Slow or dead endpoints only slow their own
deliveries: each runs in its own task, bounded by a semaphore and by timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import httpx
import orjson
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from services.notifications.application import (
    NotificationsApp,
    certification_title,
    links_expire_on,
    personal_links,
    space_link,
)
from services.notifications.destinations import Destinations
from services.notifications.domain import Notification
from services.notifications.email import (
    AttestationsMail,
    MailItem,
    render,
    template_environment,
)
from services.notifications.smtp import SmtpDeliveryError, SmtpPool
from services.notifications.webhooks import MAX_ATTEMPTS, Outcome, backoff, deliver
from services.notifications.wire import sender_address
from services.runtime import tokens, tracing

log = logging.getLogger(__name__)

TOPICS = [
    get_topic(cls)
    for cls in (
        Notification.Queued,
        Notification.Attempting,
        Notification.Sent,
        Notification.Failed,
        Notification.GaveUp,
        Notification.Replayed,
    )
]


PENDING = ("queued", "failed", "attempting")
RETRY_AFTER_MAX = 3600.0  # a receiver's Retry-After is followed, up to an hour
# Notifications kept in memory between their queueing and their sending: 100,000 queued at once
# held ~400 MiB; past this many, the rest are read from the store when their turn comes.
LIVE_LIMIT = 10_000


def _channel(key: str) -> str:
    return "email" if key.startswith("mail:") else "webhook"


@dataclass
class Tracked:
    state: str
    exam_center: str
    due: float  # monotonic-comparable wall time (epoch seconds) when it may be attempted


class Dispatcher:
    def __init__(
        self,
        app: NotificationsApp,
        smtp: SmtpPool,
        http: httpx.AsyncClient,
        *,
        concurrency: int = 32,
        claim_timeout: float = 30.0,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = 1.0,
        webhook_timeout: float = 5.0,
        worker: str = "dispatcher",
        clock: Callable[[], float] = time.time,
        destinations: Destinations | None = None,
    ) -> None:
        sender_address(app.sender)  # a sender we cannot write fails the start, not every e-mail
        self.app = app
        self.smtp = smtp
        self.http = http
        self.concurrency = concurrency
        self.claim_timeout = claim_timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.webhook_timeout = webhook_timeout
        self.worker = worker
        self.clock = clock
        # Where webhooks may go; by default public https destinations only.
        self.destinations = destinations or Destinations()
        self.templates = template_environment()
        self.tracked: dict[str, Tracked] = {}
        self._keys: dict[UUID, str] = {}  # aggregate id -> delivery key
        # Notifications not yet sent or given up, kept current from the log: a claim does not
        # read each one back from the store (a replica's write makes the save fail instead).
        self._live: dict[str, Notification] = {}
        self._cursor = 0
        self._inflight: set[str] = set()
        self._moved: set[str] = set()  # keys whose state changed in the current refresh
        # Per channel, (due, key) in a heap: the loop looks only at what is due.
        self._agenda: dict[str, list[tuple[float, str]]] = {"email": [], "webhook": []}
        self._busy = {"email": 0, "webhook": 0}
        self._finished: list[tuple[Notification, Outcome]] = []
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets
        self.sent_total = 0

    # --- following our own log ---------------------------------------------------------------

    def refresh(self) -> int:
        """Read new notification events; return how many were read."""
        read = 0
        while True:
            batch = self.app.process_recorder.select_notifications(
                start=self._cursor, limit=1000, topics=TOPICS, inclusive_of_start=False
            )
            if not batch:
                return read
            for stored in batch:
                self._track(self.app.mapper.to_domain_event(stored))
            self._cursor = batch[-1].id
            read += len(batch)
            # One agenda item per key that moved, not one per event read (a start-up replay
            # of the whole log would otherwise push one per historical event).
            for key in self._moved:
                entry = self.tracked.get(key)
                if entry is not None and entry.state in PENDING:
                    self._schedule(key, entry)
            self._moved.clear()

    def _track(self, domain_event: object) -> None:
        e: Any = domain_event  # attributes made by eventsourcing at run time
        if isinstance(domain_event, Notification.Queued):
            queued = Tracked("queued", e.exam_center, 0.0)
            self.tracked[e.delivery_key] = queued
            self._keys[e.originator_id] = e.delivery_key
            if len(self._live) < LIVE_LIMIT:  # beyond, a backlog is read back when claimed
                self._live[e.delivery_key] = e.mutate(None)
            self._moved.add(e.delivery_key)
            return
        key = self._keys.get(e.originator_id)
        if key is None:
            return
        entry = self.tracked.get(key)
        if entry is None:
            return
        self._follow(key, e)
        if isinstance(domain_event, Notification.Attempting):
            entry.state = "attempting"
            entry.due = _epoch(e.at) + self.claim_timeout
        elif isinstance(domain_event, Notification.Sent):
            entry.state = "sent"
        elif isinstance(domain_event, Notification.Failed):
            entry.state = "failed"
            entry.due = _epoch(e.retry_at)
        elif isinstance(domain_event, Notification.GaveUp):
            entry.state = "gave_up"
        elif isinstance(domain_event, Notification.Replayed):
            entry.state, entry.due = "queued", 0.0
            self._live.pop(key, None)  # replayed through the API: reload it from the store
        if entry.state == "sent":  # done for good: forget it (memory stays bounded)
            self._live.pop(key, None)
            del self.tracked[key], self._keys[e.originator_id]
        elif entry.state == "gave_up":  # kept: listed for the exam center, may be replayed
            self._live.pop(key, None)
        else:
            self._moved.add(key)

    def _schedule(self, key: str, entry: Tracked) -> None:
        heapq.heappush(self._agenda[_channel(key)], (entry.due, key))

    def _take_due(self, channel: str, limit: int) -> list[str]:
        """Up to ``limit`` keys of ``channel`` that are due, earliest first. Agenda items that
        no longer match their notification (it moved on since) are dropped as they come up."""
        agenda, now, taken = self._agenda[channel], self.clock(), dict[str, None]()
        while agenda and len(taken) < limit and agenda[0][0] <= now:
            due, key = heapq.heappop(agenda)
            entry = self.tracked.get(key)
            if (
                entry is not None
                and entry.due == due
                and entry.state in PENDING
                and key not in self._inflight
            ):
                taken[key] = None
        return list(taken)

    def _follow(self, key: str, e: Any) -> None:
        """Keep the in-memory aggregate current with events read from the log. Our own claims
        and outcomes are already applied to it; one we cannot place means we missed something,
        and the aggregate is read from the store when next needed."""
        live = self._live.get(key)
        if live is None or e.originator_version <= live.version:
            return
        if key in self._inflight:
            # A replica retook our claim while we are still sending: the object our send task
            # holds must not change under it. Our outcome then fails on its version and is
            # left to the new owner; the store is read again when next needed.
            del self._live[key]
        elif e.originator_version == live.version + 1:
            e.mutate(live)
        else:
            del self._live[key]

    # --- running -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, idle: float = 0.05) -> None:
        """Claim what is due in one transaction, send each on its own task (a slow endpoint
        holds only its own slot; e-mails and webhooks have separate slots), and record the
        outcomes that finished in one transaction: a few writes per hundreds of messages."""
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.refresh)
                claimed = await self._claim_due()
                for notification in claimed:
                    task = asyncio.create_task(self._send_one(notification))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                recorded = await self._record_finished()
                if not claimed and not recorded:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=idle)
            except Exception:
                log.exception("dispatcher loop failed; retrying")
                await asyncio.sleep(0.5)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._record_finished()

    def due(self) -> list[str]:
        """Every key that may be attempted now (a full scan: for inspection, not the loop)."""
        now = self.clock()
        return [
            key
            for key, entry in self.tracked.items()
            if key not in self._inflight and entry.state in PENDING and entry.due <= now
        ]

    def failed_for(self, exam_center: str) -> list[str]:
        entries = list(self.tracked.items())  # the refresh thread may change it meanwhile
        return [k for k, e in entries if e.exam_center == exam_center and e.state == "gave_up"]

    async def _claim_due(self) -> list[Notification]:
        picked = [
            key
            for channel in ("email", "webhook")
            for key in self._take_due(channel, self.concurrency - self._busy[channel])
        ]
        if not picked:
            return []
        try:
            claimed = await asyncio.to_thread(self._claim, picked)
        finally:
            # Not claimed (a replica did, or the store failed): back on the agenda; an item
            # that no longer matches is dropped when it comes up.
            for key in picked:
                entry = self.tracked.get(key)
                if entry is not None and entry.state in PENDING:
                    self._schedule(key, entry)
        for n in claimed:
            self._inflight.add(n.delivery_key)
            self._busy[n.channel] += 1
        return claimed

    def _claim(self, keys: list[str]) -> list[Notification]:
        with self._forgetting_on_error(keys):
            return self._claim_keys(keys)

    def _claim_keys(self, keys: list[str]) -> list[Notification]:
        """Claim in one transaction; if a replica claimed one meanwhile, claim one by one."""
        now = self.clock()
        claimable = [n for n in map(self._aggregate, keys) if n and self._claimable(n, now)]
        for n in claimable:
            n.claim(attempt=n.attempts + 1, at=_iso(now), worker=self.worker)
        try:
            self.app.save(*claimable)
            return claimable
        except IntegrityError:
            for key in keys:
                self._live.pop(key, None)
        won = []
        for key in keys:
            one = self._aggregate(key)
            if one is None or not self._claimable(one, now):
                continue
            n = one
            n.claim(attempt=n.attempts + 1, at=_iso(now), worker=self.worker)
            try:
                self.app.save(n)
            except IntegrityError:
                self._live.pop(key, None)
                continue  # someone else claimed it first
            won.append(n)
        return won

    def _aggregate(self, key: str) -> Notification | None:
        live = self._live.get(key)
        if live is None:
            live = self.app.notification(key)
            if live is not None and live.state not in ("sent", "gave_up"):
                self._live[key] = live  # until sent: its outcome is recorded on this object
        return live

    def _claimable(self, n: Notification | None, now: float) -> bool:
        if n is None or n.state in ("sent", "gave_up"):
            return False
        if n.state == "attempting" and n.claimed_at is not None:
            return _epoch(n.claimed_at) + self.claim_timeout <= now  # a crashed sender's
        return True

    async def _send_one(self, notification: Notification) -> None:
        try:
            with tracing.continued(notification.traceparent):  # log lines carry its trace
                outcome = await self._send(notification)
        except Exception as error:
            log.exception("delivery failed unexpectedly", extra={"key": notification.delivery_key})
            outcome = Outcome(False, True, None, f"erreur interne : {type(error).__name__}")
        self._finished.append((notification, outcome))

    async def _record_finished(self) -> int:
        if not self._finished:
            return 0
        batch, self._finished = self._finished, []
        try:
            await asyncio.to_thread(self._record, batch)
        finally:
            for notification, _ in batch:
                key = notification.delivery_key
                self._inflight.discard(key)
                self._busy[notification.channel] -= 1
                # Its claim's agenda item may have come and gone while it was in flight; if the
                # outcome could not be recorded, this one makes sure it is retried.
                entry = self.tracked.get(key)
                if entry is not None and entry.state in PENDING:
                    self._schedule(key, entry)
        return len(batch)

    async def _send(self, n: Notification) -> Outcome:
        if n.channel == "email":
            try:
                message = render(self._mail(n), self.templates)
            except ValueError as error:
                # e.g. a non-ASCII local part (RFC 6531): our headers cannot carry it; sending
                # again will not help, so it is given up and listed for the exam center.
                detail = f"adresse ou contenu inutilisable dans un e-mail : {error}"
                return Outcome(False, False, None, detail)
            try:
                await self.smtp.send(message)
            except SmtpDeliveryError as error:
                return Outcome(False, not error.permanent, None, error.detail)
            return Outcome(True, False, None, "accepté par le serveur SMTP")
        webhook = await asyncio.to_thread(self.app.webhook, n.exam_center)
        if webhook is None:
            return Outcome(False, False, None, "aucun webhook enregistré pour ce centre")
        body = orjson.dumps({"id": n.delivery_key, **n.payload})
        return await deliver(
            self.http,
            webhook.url,
            webhook.secret,
            n.delivery_key,
            body,
            destinations=self.destinations,
            timeout=self.webhook_timeout,
        )

    def _mail(self, n: Notification) -> AttestationsMail:
        """The e-mail a stored notification is: one decision's attestations, or (queued
        before 2026-12) one attestation."""
        payload = n.payload
        now = self.clock()
        minted = False
        if "items" in payload:
            subject = tokens.holder_subject(n.exam_center, n.candidate_number)
            epoch = int(payload.get("links_epoch", 0))
            listed = []
            for item in payload["items"]:
                # Queued since 2026-12: the links' tokens are minted now, never stored. Queued
                # before: the links (and their tokens) are in the payload.
                download_url, credential_url = item.get("download_url"), item.get("credential_url")
                if item.get("personal_links"):
                    download_url, credential_url = personal_links(
                        self.app.download_secret,
                        self.app.attestations_url,
                        subject,
                        item["attestation_id"],
                        epoch,
                        now,
                    )
                    minted = True
                listed.append(
                    MailItem(
                        kind=item["kind"],
                        code=item["code"],
                        title=item["title"],
                        verify_url=item["verify_url"],
                        download_url=download_url,
                        credential_url=credential_url,
                        reason=item.get("reason"),
                        route=item.get("route"),  # queued since 2027-01
                        session=item.get("session"),
                        grade_session=item.get("grade_session"),
                    )
                )
            items = tuple(listed)
        else:
            items = (
                MailItem(
                    kind=payload["kind"],
                    code=payload["code"],
                    title=payload["title"],
                    verify_url=payload["verify_url"],
                    download_url=payload.get("download_url"),
                    credential_url=payload.get("credential_url"),
                    reason=payload.get("reason"),
                ),
            )
        decided_on = payload.get("decided_on")
        expire_on = links_expire_on(now).isoformat() if minted else payload.get("links_expire_on")
        space_url = (
            space_link(
                self.app.download_secret,
                self.app.attestations_url,
                tokens.holder_subject(n.exam_center, n.candidate_number),
                int(payload.get("links_epoch", 0)),
                now,
            )
            if minted
            else None
        )
        code = payload.get("certification") or ""
        return AttestationsMail(
            delivery_key=n.delivery_key,
            event=payload["event"],
            to_address=payload["to_address"],
            holder_name=payload["holder_name"],
            certification_title=payload.get("certification_title") or certification_title(code),
            certification_code=code,
            decided_on=date.fromisoformat(decided_on) if decided_on else None,
            items=items,
            sender=self.app.sender,
            domain=self.app.mail_domain,
            links_expire_on=date.fromisoformat(expire_on) if expire_on else None,
            space_url=space_url,
            language=payload.get("language") or "fr",  # queued before 2027-01: French
        )

    @contextlib.contextmanager
    def _forgetting_on_error(self, keys: list[str]) -> Iterator[None]:
        """eventsourcing's save() applies and drains new events before writing them: after a
        failed write (a lost connection, a locked database) the objects we hold are ahead of
        the store. Drop them; the store is read again when next needed."""
        try:
            yield
        except BaseException:
            for key in keys:
                self._live.pop(key, None)
            raise

    def _record(self, batch: list[tuple[Notification, Outcome]]) -> None:
        with self._forgetting_on_error([n.delivery_key for n, _ in batch]):
            self._record_outcomes(batch)

    def _record_outcomes(self, batch: list[tuple[Notification, Outcome]]) -> None:
        now = self.clock()
        for notification, outcome in batch:
            self._apply_outcome(notification, outcome, now)
        try:
            self.app.save(*(n for n, _ in batch))
        except IntegrityError:
            # A claim was retaken meanwhile (this worker looked dead). The failed save took the
            # pending events with it: record each outcome again on the stored notification if
            # it is still at our claim, and leave the retaken ones to their new owner.
            for notification, outcome in batch:
                self._live.pop(notification.delivery_key, None)
                stored = self.app.notification(notification.delivery_key)
                if stored is None or stored.version != notification.version - 1:
                    log.warning(
                        "outcome not recorded: claimed again meanwhile",
                        extra={"delivery_key": notification.delivery_key},
                    )
                    continue
                self._apply_outcome(stored, outcome, now)
                try:
                    self.app.save(stored)
                except IntegrityError:
                    log.warning(
                        "outcome not recorded: claimed again meanwhile",
                        extra={"delivery_key": notification.delivery_key},
                    )
        self.sent_total += sum(1 for _, outcome in batch if outcome.ok)

    def _apply_outcome(self, notification: Notification, outcome: Outcome, now: float) -> None:
        if outcome.ok:
            notification.sent(at=_iso(now), detail=outcome.detail)
        elif outcome.retryable and notification.attempts < self.max_attempts:
            delay = backoff(notification.attempts, base=self.backoff_base, rng=self._rng)
            if outcome.retry_after is not None:  # the receiver said when: not sooner
                delay = max(delay, min(outcome.retry_after, RETRY_AFTER_MAX))
            notification.failed(at=_iso(now), error=outcome.detail, retry_at=_iso(now + delay))
        else:
            notification.give_up(at=_iso(now), error=outcome.detail)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
