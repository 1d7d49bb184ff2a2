"""Credential offers (OpenID4VCI 1.0, pre-authorized code flow), as events.

A ``CredentialOffer`` is made from the candidate's personal space for one of their attestations:
it is identified by a digest of its pre-authorized code (the secret in the offer's QR code), so
the token endpoint finds it without an index and the aggregate id reveals nothing. No secret is
stored in clear: the pre-authorized code is only in the id (SHA-256), the transaction code is
kept as an HMAC under the service's secret (six digits hashed plainly would be found from the
store by trying a million values), and the access token as a SHA-256 digest.

Its life: ``Offered`` (which attestation of which holder, the configurations offered, until when,
the digests), then at most ``MAX_TX_CODE_FAILURES`` ``TxCodeFailed`` (the last one voids it),
``Redeemed`` once (the access token issued: a second /token with the same code is refused),
then ``CredentialIssued`` once per configuration (with the digest of the c_nonce the key proof
carried, so one nonce proves possession once). Expiry is by time, not an event.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.attestations.domain.aggregates import NAMESPACE

CODE_BYTES = 32  # pre-authorized code and access token: 256 bits from the OS's CSPRNG
TX_CODE_DIGITS = 6
MAX_TX_CODE_FAILURES = 5  # wrong transaction codes before the offer is void
OFFER_LIFETIME = timedelta(minutes=10)  # from the space to the token request
ACCESS_TOKEN_LIFETIME = timedelta(minutes=5)  # from the token to the credential request


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def new_tx_code() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(TX_CODE_DIGITS))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def tx_code_mac(key: bytes, offer: UUID, tx_code: str) -> str:
    return hmac.new(key, f"tx_code:{offer}:{tx_code}".encode(), hashlib.sha256).hexdigest()


class CredentialOffer(Aggregate):
    """One offer of one attestation to a wallet."""

    TxCodeFailed: ClassVar[type[Aggregate.Event]]
    TxCodeTried: ClassVar[type[Aggregate.Event]]
    Redeemed: ClassVar[type[Aggregate.Event]]
    CredentialIssued: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(code_digest: str) -> UUID:
        return uuid5(NAMESPACE, "offer:" + code_digest)

    @event("Offered")
    def __init__(
        self,
        code_digest: str,
        tx_code_mac: str,
        exam_center: str,
        candidate_number: str,
        attestation_id: str,
        configuration_ids: list[str],
        created_at: str,
        expires_at: str,
        links_epoch: int,
    ) -> None:
        self.code_digest = code_digest
        self.tx_code_mac = tx_code_mac
        self.exam_center = exam_center
        self.candidate_number = candidate_number
        self.attestation_id = attestation_id
        self.configuration_ids = configuration_ids
        self.created_at = created_at
        self.expires_at = expires_at
        # The personal links epoch it was made under: a center revoking those links (a mailbox
        # taken over) voids the offers made with them too.
        self.links_epoch = links_epoch
        self.tx_code_failures = 0
        self.redeemed_at: str | None = None
        self.token_digest: str | None = None
        self.token_expires_at: str | None = None
        self.issued: list[str] = []  # configuration ids already issued
        self.used_nonces: list[str] = []  # digests of the c_nonces of accepted proofs

    # --- the token endpoint -------------------------------------------------------------------

    def redeemable(self, now: datetime, holder_epoch: int) -> str | None:
        """Why the pre-authorized code is refused now (None: it is not)."""
        if self.redeemed_at is not None:
            return "this pre-authorized code was already used"
        if self.tx_code_failures >= MAX_TX_CODE_FAILURES:
            return "too many wrong transaction codes: this offer is void"
        if holder_epoch != self.links_epoch:
            return "this offer was withdrawn with the candidate's personal links"
        if now >= datetime.fromisoformat(self.expires_at):
            return "this offer has expired"
        return None

    def tx_code_matches(self, key: bytes, tx_code: str) -> bool:
        return hmac.compare_digest(self.tx_code_mac, tx_code_mac(key, self.id, tx_code))

    @event("TxCodeFailed")
    def fail_tx_code(self, at: str) -> None:
        # Recorded after a wrong code until 2026-12-03 (replayed, no longer written): counted
        # as a try, as TxCodeTried is.
        self.tx_code_failures += 1

    @event("TxCodeTried")
    def try_tx_code(self, at: str) -> None:
        """One of the ``MAX_TX_CODE_FAILURES`` tries, recorded *before* the code is compared:
        two guesses at once cannot both be compared against one version of the offer (the
        second save fails on the version), so concurrency buys no extra guess. A right code
        redeems the offer right after; its try then no longer matters."""
        self.tx_code_failures += 1

    @event("Redeemed")
    def redeem(self, at: str, token_digest: str, token_expires_at: str) -> None:
        self.redeemed_at = at
        self.token_digest = token_digest
        self.token_expires_at = token_expires_at

    # --- the credential endpoint --------------------------------------------------------------

    def authorizes(self, access_token: str, now: datetime) -> bool:
        """Whether ``access_token`` is this offer's and still valid."""
        if self.token_digest is None or self.token_expires_at is None:
            return False
        if not hmac.compare_digest(self.token_digest, digest(access_token)):
            return False
        return now < datetime.fromisoformat(self.token_expires_at)

    @event("CredentialIssued")
    def record_issuance(self, at: str, configuration_id: str, nonce_digest: str | None) -> None:
        self.issued = [*self.issued, configuration_id]
        if nonce_digest is not None:
            self.used_nonces = [*self.used_nonces, nonce_digest]
