"""The IETF Token Status Lists the SD-JWT VC form of the attestations points to.

One Token Status List per W3C Bitstring Status List, with the same number and the same
indexes: both are read from the one ``StatusList`` aggregate that a revocation writes (and the
one ``StatusAllocator`` that hands out positions), so revoking an attestation sets its bit in
both at once and no second allocation exists. Served at ``/v1/token-status-lists/{number}`` as
a ``statuslist+jwt`` signed by the service's active key; re-signed only when the list changed
(its aggregate's version), the key rotated, or half of the token's lifetime has passed (so a
served token is never near its ``exp``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.attestations.application import AttestationsApp
from services.attestations.domain import token_status_list as tsl
from services.attestations.domain.aggregates import (
    MAX_STATUS_LIST,
    STATUS_LIST_SIZE,
    StatusAllocator,
    StatusList,
)
from services.attestations.domain.jose import sign_typed

PATH = "/v1/token-status-lists/"
#: How long a verifier may cache a status list token before fetching it again (``ttl``).
TTL_SECONDS = 300
#: A token's lifetime (``exp`` - ``iat``); served while less than half of it has passed.
LIFETIME_SECONDS = 24 * 3600


def token_status_list_url(base_url: str, number: int) -> str:
    return f"{base_url.rstrip('/')}{PATH}{number}"


@dataclass(frozen=True)
class _Signed:
    version: int
    kid: str
    iat: int
    token: str


class TokenStatusLists:
    def __init__(self, app: AttestationsApp, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.clock = clock
        self._cache: dict[int, _Signed] = {}
        self._lock = threading.Lock()

    def url(self, number: int) -> str:
        return token_status_list_url(self.app.links.base_url, number)

    def number_of(self, uri: str) -> int | None:
        """The list number of one of this service's status list URIs (None otherwise)."""
        prefix = self.url(0)[:-1]
        rest = uri[len(prefix) :] if uri.startswith(prefix) else ""
        if not rest.isdigit() or len(rest) > 10 or rest.startswith("0"):
            return None
        return int(rest)

    def _list(self, number: int) -> tuple[int, list[int]] | None:
        """(version, revoked indexes) of list ``number``; None when no attestation has been
        given a position in it yet (as ``status_list_credential`` says)."""
        if not 1 <= number <= MAX_STATUS_LIST:
            return None
        partition, nth = StatusAllocator.list_owner(number)
        app = self.app
        allocator = app.get_optional(StatusAllocator.create_id(partition), StatusAllocator)
        if allocator is None or nth > allocator.next_index // STATUS_LIST_SIZE:
            return None
        status = app.get_optional(StatusList.create_id(number), StatusList)
        if status is None:
            return 0, []
        return status.version, list(status.revoked)

    def token(self, number: int) -> str | None:
        """The signed Status List Token of list ``number`` (None: no such list)."""
        found = self._list(number)
        if found is None:
            return None
        version, revoked = found
        key = self.app.signing_key()
        now = int(self.clock())
        with self._lock:
            cached = self._cache.get(number)
        if (
            cached is not None
            and cached.version == version
            and cached.kid == key.kid
            and now - cached.iat < LIFETIME_SECONDS // 2
        ):
            return cached.token
        claims = tsl.status_list_claims(
            uri=self.url(number),
            issuer=self.app.issuers.did,
            lst=tsl.encode_lst(revoked, STATUS_LIST_SIZE),
            iat=now,
            exp=now + LIFETIME_SECONDS,
            ttl=TTL_SECONDS,
        )
        token = sign_typed(claims, key, tsl.TYP)
        with self._lock:
            self._cache[number] = _Signed(version, key.kid, now, token)
        return token

    def status(self, number: int, index: int) -> int | None:
        """The status of ``index`` in list ``number`` (VALID or INVALID), read from the store
        as the served token says it; None when the list or the index does not exist."""
        found = self._list(number)
        if found is None or not 0 <= index < STATUS_LIST_SIZE:
            return None
        return tsl.INVALID if index in found[1] else tsl.VALID
