"""Share links: a candidate's consent to show chosen attestations to whoever has the link.

A ``ShareLink`` is identified by a digest of its secret (the link itself), so a lookup needs
no index and the aggregate id reveals nothing; ``HolderShares`` lists a candidate's links for
their space. Both are written by the candidate's requests, never by the consumers, so they
never contend with the registry's events over the ``Holder``.

What the link's expiry means is the candidate's consent, not the attestations' validity: each
attestation shown stays verifiable at its own address, with its own live status.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.attestations.domain.aggregates import NAMESPACE

TOKEN_BYTES = 32  # 256 bits from the OS's CSPRNG: unguessable, whatever the number of links
TOKEN_CHARS = 43  # base64url of TOKEN_BYTES, unpadded
# How long a link may live, as the candidate chooses it (None: until they revoke it).
DURATIONS: dict[str, timedelta | None] = {
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "365d": timedelta(days=365),
    "until_revoked": None,
}
MAX_ATTESTATIONS = 64  # per link; a candidate holds a few dozen at most
MAX_ACTIVE_LINKS = 20  # in force at once, per candidate: withdraw one to make another
MAX_LINKS = 1000  # ever made, per candidate (the list replays from a snapshot)
LISTED_LINKS = 50  # what the space shows, newest first
# An opening is recorded at most once per window: a link opened in a loop (or by a mail
# scanner's previews) writes a few events an hour, not one per request.
OPENING_WINDOW = timedelta(minutes=10)
RECENT_OPENINGS = 20  # what the space shows of each link's openings


_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def well_formed(token: str) -> bool:
    """Cheap refusal of what cannot be a link, before the store is asked."""
    return len(token) == TOKEN_CHARS and all(c in _URLSAFE for c in token)


def share_id(token: str) -> UUID:
    return uuid5(NAMESPACE, "share:" + hashlib.sha256(token.encode()).hexdigest())


class ShareLink(Aggregate):
    """One share link: what it shows, until when, and when it was opened."""

    Opened: ClassVar[type[Aggregate.Event]]
    Revoked: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(token: str) -> UUID:
        return share_id(token)

    @event("Created")
    def __init__(
        self,
        token: str,
        exam_center: str,
        candidate_number: str,
        attestation_ids: list[str],
        created_at: str,
        expires_at: str | None,
        links_epoch: int,
    ) -> None:
        self.token = token  # shown again in the space; the store is encrypted at rest
        self.exam_center = exam_center
        self.candidate_number = candidate_number
        self.attestation_ids = attestation_ids
        self.created_at = created_at
        self.expires_at = expires_at
        # The candidate's personal links epoch when it was made: a center revoking those
        # links (a mailbox taken over) ends the share links made with them too.
        self.links_epoch = links_epoch
        self.revoked_at: str | None = None
        self.openings = 0
        self.first_opened_at: str | None = None
        self.recent_openings: list[str] = []  # newest last, at most RECENT_OPENINGS

    def state(self, now: datetime, holder_epoch: int) -> str:
        """``active``, ``revoked`` (by the candidate, or with their personal links) or
        ``expired``."""
        if self.revoked_at is not None or holder_epoch != self.links_epoch:
            return "revoked"
        if self.expires_at is not None and now >= datetime.fromisoformat(self.expires_at):
            return "expired"
        return "active"

    def open(self, now: datetime) -> bool:
        """Record an opening unless one was recorded within ``OPENING_WINDOW``."""
        if self.recent_openings:
            last = datetime.fromisoformat(self.recent_openings[-1])
            if now - last < OPENING_WINDOW:
                return False
        self._opened(at=now.isoformat())
        return True

    @event("Opened")
    def _opened(self, at: str) -> None:
        self.openings += 1
        self.first_opened_at = self.first_opened_at or at
        self.recent_openings = [*self.recent_openings, at][-RECENT_OPENINGS:]

    def revoke(self, at: str, by: str) -> bool:
        if self.revoked_at is not None:
            return False
        self._revoked(at=at, by=by)
        return True

    @event("Revoked")
    def _revoked(self, at: str, by: str) -> None:
        self.revoked_at = at


class HolderShares(Aggregate):
    """The share links a candidate made, in the order they made them, and which may still be
    in force (so that counting them reads no link)."""

    Added: ClassVar[type[Aggregate.Event]]
    Withdrawn: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(exam_center: str, candidate_number: str) -> UUID:
        return uuid5(NAMESPACE, f"shares:{exam_center}:{candidate_number}")

    @event("Started")
    def __init__(self, exam_center: str, candidate_number: str) -> None:
        self.exam_center = exam_center
        self.candidate_number = candidate_number
        self.links: list[str] = []  # ShareLink ids (str)
        self.open_links: dict[str, tuple[str | None, int]] = {}  # id -> (expires_at, epoch)

    @event("Added")
    def add(self, link_id: str, at: str, expires_at: str | None, links_epoch: int) -> None:
        self.links.append(link_id)
        self.open_links[link_id] = (expires_at, links_epoch)

    @event("Withdrawn")
    def withdraw(self, link_id: str, at: str) -> None:
        self.open_links.pop(link_id, None)

    def active(self, now: datetime, holder_epoch: int) -> list[str]:
        """The links still in force: not withdrawn, not expired, made in this links epoch."""
        return [
            link_id
            for link_id, (expires_at, epoch) in self.open_links.items()
            if epoch == holder_epoch
            and (expires_at is None or now < datetime.fromisoformat(expires_at))
        ]

    @property
    def full(self) -> bool:
        return len(self.links) >= MAX_LINKS


def describe(link: ShareLink) -> dict[str, Any]:
    """A link's facts for a page (no token: the caller decides where the link is shown)."""
    return {
        "id": str(link.id),
        "attestation_ids": list(link.attestation_ids),
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "revoked_at": link.revoked_at,
        "openings": link.openings,
        "first_opened_at": link.first_opened_at,
        "recent_openings": list(reversed(link.recent_openings)),  # newest first
    }
