"""The candidate's share links, over the attestations store: made, listed, opened, revoked.

Called from the HTTP layer's threads. Every change is an event of ``ShareLink`` or
``HolderShares`` (domain/sharing.py); a version conflict (two requests of the same candidate
at once) raises ``IntegrityError``, which the caller answers with 409 and nothing changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from services.attestations.application import AttestationsApp
from services.attestations.domain.aggregates import Attestation, Holder
from services.attestations.domain.sharing import (
    DURATIONS,
    LISTED_LINKS,
    MAX_ACTIVE_LINKS,
    MAX_ATTESTATIONS,
    MAX_LINKS,
    HolderShares,
    ShareLink,
    new_token,
    share_id,
    well_formed,
)
from services.runtime.i18n import N_, Texts


class ShareRefused(ValueError):
    """What the candidate asked for cannot be shared: ``message`` (a catalogue msgid, French)
    with its ``params`` says why; ``worded`` in the reader's language."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params

    def worded(self, t: Texts) -> str:
        text = t.gettext(self.message)
        return text % self.params if self.params else text


@dataclass(frozen=True)
class Shared:
    """An open share link and what it shows, in the order the candidate chose them."""

    link: ShareLink
    holder: Holder
    attestations: list[Attestation]


def _now() -> datetime:
    return datetime.now(UTC)


class ShareLinks:
    def __init__(self, app: AttestationsApp, clock: Callable[[], datetime] = _now) -> None:
        self.app = app
        self.clock = clock

    def create(self, holder: Holder, attestation_ids: Sequence[str], duration: str) -> ShareLink:
        """A new link to the chosen attestations (each the candidate's own, in force)."""
        if duration not in DURATIONS:
            raise ShareRefused(N_("Choisissez une durée du lien parmi celles proposées."))
        chosen = list(dict.fromkeys(attestation_ids))  # once each, in the order given
        if not chosen:
            raise ShareRefused(N_("Choisissez au moins une attestation à partager."))
        if len(chosen) > MAX_ATTESTATIONS:
            raise ShareRefused(
                N_("Un lien peut montrer au plus %(n)d attestations."), n=MAX_ATTESTATIONS
            )
        own = set(holder.public_ids())
        for public_id in chosen:
            attestation = self.app.attestation(public_id) if public_id in own else None
            if attestation is None:
                raise ShareRefused(N_("Vous ne pouvez partager que vos propres attestations."))
            if attestation.status != "valid":
                raise ShareRefused(
                    N_("L'attestation %(code)s est révoquée : elle ne peut plus être partagée."),
                    code=attestation.code,
                )
        index = self._index(holder) or HolderShares(holder.exam_center, holder.candidate_number)
        now = self.clock()
        if len(index.active(now, holder.links_epoch)) >= MAX_ACTIVE_LINKS:
            raise ShareRefused(
                N_(
                    "Vous avez déjà %(n)d liens de partage actifs, le maximum : retirez-en un "
                    "pour en créer un autre."
                ),
                n=MAX_ACTIVE_LINKS,
            )
        if index.full:
            raise ShareRefused(
                N_(
                    "Vous avez déjà créé %(n)d liens de partage, le maximum : adressez-vous "
                    "à votre centre d'examen."
                ),
                n=MAX_LINKS,
            )
        lifetime = DURATIONS[duration]
        link = ShareLink(
            token=new_token(),
            exam_center=holder.exam_center,
            candidate_number=holder.candidate_number,
            attestation_ids=chosen,
            created_at=now.isoformat(),
            expires_at=(now + lifetime).isoformat() if lifetime else None,
            links_epoch=holder.links_epoch,
        )
        index.add(
            link_id=str(link.id),
            at=now.isoformat(),
            expires_at=link.expires_at,
            links_epoch=link.links_epoch,
        )
        self.app.save(index, link)  # one transaction: listed if and only if it exists
        return link

    def of(self, holder: Holder, limit: int = LISTED_LINKS) -> list[ShareLink]:
        """The candidate's latest links, newest first."""
        index = self._index(holder)
        if index is None:
            return []
        found = [self._link(link_id) for link_id in reversed(index.links[-limit:])]
        return [link for link in found if link is not None]

    def revoke(self, holder: Holder, link_id: str) -> ShareLink | None:
        """Ends one of the candidate's links at once; None if it is not theirs."""
        index = self._index(holder)
        if index is None or link_id not in index.links:
            return None
        link = self._link(link_id)
        if link is None:
            return None
        at = self.clock().isoformat()
        if link.revoke(at=at, by="holder"):
            index.withdraw(link_id=link_id, at=at)
            self.app.save(link, index)  # one transaction: no longer counted once withdrawn
        return link

    def open(self, token: str) -> Shared | None:
        """What an active link shows, recording the opening; None for an unknown, expired or
        revoked link (the caller tells which with ``find``)."""
        found = self.find(token)
        if found is None or self.state(found) != "active":
            return None
        link, holder = found
        if link.open(self.clock()):
            # Another request may have recorded this window's opening meanwhile.
            with contextlib.suppress(IntegrityError):
                self.app.save(link)
        held = [self.app.attestation(public_id) for public_id in link.attestation_ids]
        return Shared(link, holder, [a for a in held if a is not None])

    def find(self, token: str) -> tuple[ShareLink, Holder] | None:
        if not well_formed(token):
            return None
        link = self.app.get_optional(share_id(token), ShareLink)
        if link is None or link.token != token:
            return None
        holder = self.app.holder(link.exam_center, link.candidate_number)
        return None if holder is None else (link, holder)

    def state(self, found: tuple[ShareLink, Holder]) -> str:
        link, holder = found
        return link.state(self.clock(), holder.links_epoch)

    def _index(self, holder: Holder) -> HolderShares | None:
        return self.app.get_optional(
            HolderShares.create_id(holder.exam_center, holder.candidate_number), HolderShares
        )

    def _link(self, link_id: str) -> ShareLink | None:
        try:
            return self.app.get_optional(UUID(link_id), ShareLink)
        except ValueError:
            return None
