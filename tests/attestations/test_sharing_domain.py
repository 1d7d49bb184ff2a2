"""Share links as aggregates, in memory: states, openings, revocation, replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventsourcing.application import Application

from services.attestations.domain.sharing import (
    OPENING_WINDOW,
    RECENT_OPENINGS,
    TOKEN_CHARS,
    HolderShares,
    ShareLink,
    new_token,
    share_id,
    well_formed,
)

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def link(expires: datetime | None = T0 + timedelta(days=7), epoch: int = 0) -> ShareLink:
    return ShareLink(
        token=new_token(),
        exam_center="0750001A",
        candidate_number="S1",
        attestation_ids=["a" * 22],
        created_at=T0.isoformat(),
        expires_at=expires.isoformat() if expires else None,
        links_epoch=epoch,
    )


def test_tokens_are_long_random_and_their_ids_derive_from_them() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) == TOKEN_CHARS and well_formed(t) for t in tokens)
    token = next(iter(tokens))
    other = token[:-1] + ("B" if token.endswith("A") else "A")
    assert share_id(token) == share_id(token) != share_id(other)
    assert str(share_id(token)) not in token  # the id does not give the link away
    for bad in ("", token[:-1], token + "A", token[:-1] + "=", token[:-1] + "é"):
        assert not well_formed(bad), bad


def test_a_link_is_active_until_it_expires_is_revoked_or_its_epoch_passes() -> None:
    share = link()
    assert share.state(T0, 0) == "active"
    assert share.state(T0 + timedelta(days=7) - timedelta(seconds=1), 0) == "active"
    assert share.state(T0 + timedelta(days=7), 0) == "expired"
    assert share.state(T0, 1) == "revoked"  # the personal links were revoked since
    assert link(expires=None).state(T0 + timedelta(days=3650), 0) == "active"
    assert share.revoke(at=T0.isoformat(), by="holder") is True
    assert share.revoke(at=T0.isoformat(), by="holder") is False  # once
    assert share.state(T0, 0) == "revoked"


def test_openings_are_recorded_once_per_window_and_the_recent_ones_kept() -> None:
    share = link()
    assert share.open(T0) is True
    assert share.open(T0 + OPENING_WINDOW - timedelta(seconds=1)) is False
    assert share.open(T0 + OPENING_WINDOW) is True
    assert share.openings == 2 and share.first_opened_at == T0.isoformat()
    for n in range(2, RECENT_OPENINGS + 10):
        share.open(T0 + n * OPENING_WINDOW)
    assert share.openings == RECENT_OPENINGS + 10
    assert len(share.recent_openings) == RECENT_OPENINGS
    assert share.recent_openings[-1] == (T0 + (RECENT_OPENINGS + 9) * OPENING_WINDOW).isoformat()
    assert share.first_opened_at == T0.isoformat()


def test_links_replay_from_their_events_and_the_index_lists_them() -> None:
    app: Application = Application()
    share = link()
    share.open(T0)
    index = HolderShares("0750001A", "S1")
    index.add(link_id=str(share.id), at=T0.isoformat(), expires_at=share.expires_at, links_epoch=0)
    app.save(index, share)
    share.revoke(at=(T0 + timedelta(hours=1)).isoformat(), by="holder")
    app.save(share)

    replayed: object = app.repository.get(share_id(share.token))
    assert isinstance(replayed, ShareLink)
    assert replayed.token == share.token and replayed.openings == 1
    assert replayed.revoked_at == (T0 + timedelta(hours=1)).isoformat()
    names = [type(e).__qualname__ for e in app.events.get(share.id)]
    assert names == ["ShareLink.Created", "ShareLink.Opened", "ShareLink.Revoked"]
    listed: object = app.repository.get(HolderShares.create_id("0750001A", "S1"))
    assert isinstance(listed, HolderShares) and listed.links == [str(share.id)]


def test_the_index_counts_the_links_in_force_without_reading_them() -> None:
    index = HolderShares("0750001A", "S1")
    week = (T0 + timedelta(days=7)).isoformat()
    index.add(link_id="a", at=T0.isoformat(), expires_at=week, links_epoch=0)
    index.add(link_id="b", at=T0.isoformat(), expires_at=None, links_epoch=0)
    index.add(link_id="c", at=T0.isoformat(), expires_at=None, links_epoch=0)
    index.withdraw(link_id="c", at=T0.isoformat())
    assert index.active(T0, 0) == ["a", "b"]
    assert index.active(T0 + timedelta(days=8), 0) == ["b"]  # "a" expired
    assert index.active(T0, 1) == []  # the personal links were revoked since
    assert index.links == ["a", "b", "c"]  # the history stays listed
