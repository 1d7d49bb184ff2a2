"""Personal download links' tokens: HMAC-signed, expiring, never stored.

The notifications service mints one per link when it writes an e-mail (``mint``); the
attestations service checks it (``read``). A token names the candidate (``holder_subject``:
candidate numbers are unique per center, not nationally), the one attestation it opens, and
the candidate's *links epoch*: the attestations service counts the revocations of a
candidate's links, and a token minted for an earlier epoch opens nothing. A token that names
no attestation is the personal space's: it opens the list and every attestation in it.

Tokens of version ``t1`` (before 2026-12: the candidate alone, every attestation, no epoch)
are still honoured until they expire, unless the candidate's links were revoked since.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

VERSION = "t2"
LEGACY_VERSION = "t1"
MAX_TOKEN_CHARS = 512  # what the routes accept in ?token=


@dataclass(frozen=True)
class Grant:
    """What a valid token opens."""

    subject: str  # holder_subject(center, candidate number)
    attestation_id: str | None  # None: every attestation of the holder (t1 tokens)
    epoch: int  # the holder's links epoch when it was minted (0 for t1 tokens)

    def opens(self, subject: str, attestation_id: str, current_epoch: int) -> bool:
        return (
            hmac.compare_digest(self.subject, subject)
            and self.attestation_id in (None, attestation_id)
            and self.epoch == current_epoch
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def holder_subject(exam_center: str, candidate_number: str) -> str:
    return f"{exam_center}/{candidate_number}"


def _mac(secret: bytes, version: str, claims: str) -> bytes:
    return hmac.new(secret, f"{version}.{claims}".encode(), hashlib.sha256).digest()


def mint(
    secret: bytes,
    subject: str,
    attestation_id: str | None,
    epoch: int,
    ttl_seconds: int,
    now: float | None = None,
) -> str:
    """A token opening one attestation of ``subject`` for ``ttl_seconds``; with no
    ``attestation_id``, the candidate's personal space (every attestation they hold)."""
    expires = int((now if now is not None else time.time()) + ttl_seconds)
    claims = _b64(orjson.dumps({"c": subject, "a": attestation_id, "g": epoch, "e": expires}))
    return f"{VERSION}.{claims}.{_b64(_mac(secret, VERSION, claims))}"


def read(secret: bytes, token: str, now: float | None = None) -> Grant | None:
    """What the token opens, or None if forged, malformed or expired."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        version, claims, mac = token.split(".")
        if version not in (VERSION, LEGACY_VERSION):
            return None
        if not hmac.compare_digest(_mac(secret, version, claims), _unb64(mac)):
            return None
        data = orjson.loads(_unb64(claims))
        subject = data["c"]
        expires = int(data["e"])
        attestation_id = data["a"] if version == VERSION else None
        epoch = int(data["g"]) if version == VERSION else 0
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None
    if not isinstance(subject, str) or not isinstance(attestation_id, str | None):
        return None
    if expires < (now if now is not None else time.time()):
        return None
    return Grant(subject, attestation_id, epoch)
