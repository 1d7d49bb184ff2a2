"""Personal download tokens: HMAC-signed, expiring, scoped to one candidate of one center
(``holder_subject``: candidate numbers are unique per center, not nationally).

Minted by whoever holds the shared secret (the notifications service puts one in each e-mail),
accepted by the attestations service for that candidate's credentials and PDFs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson

VERSION = "t1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def holder_subject(exam_center: str, candidate_number: str) -> str:
    return f"{exam_center}/{candidate_number}"


def mint(secret: bytes, subject: str, ttl_seconds: int, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + ttl_seconds)
    claims = _b64(orjson.dumps({"c": subject, "e": expires}))
    mac = hmac.new(secret, f"{VERSION}.{claims}".encode(), hashlib.sha256).digest()
    return f"{VERSION}.{claims}.{_b64(mac)}"


def subject_of(secret: bytes, token: str, now: float | None = None) -> str | None:
    """Whom the token is for (``holder_subject``), or None if forged, malformed or expired.
    (Tokens minted before 2026-12 named the candidate number alone: they match no one.)"""
    try:
        version, claims, mac = token.split(".")
        expected = hmac.new(secret, f"{version}.{claims}".encode(), hashlib.sha256).digest()
        if version != VERSION or not hmac.compare_digest(expected, _unb64(mac)):
            return None
        data = orjson.loads(_unb64(claims))
        candidate = data["c"]
        expires = int(data["e"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None
    if expires < (now if now is not None else time.time()) or not isinstance(candidate, str):
        return None
    return candidate
