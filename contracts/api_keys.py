"""Exam-center API keys as every service sees them: ``cbk_<UAI>_<secret>``.

The registry issues keys and publishes their SHA-256 digest (exam-center-key-issued); any
service authenticates a center by hashing the presented key and comparing digests.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "cbk"


def new_key(uai: str) -> str:
    return f"{PREFIX}_{uai}_{secrets.token_urlsafe(32)}"


def digest(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no dictionary to guard against).
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key_digest: str) -> str:
    return key_digest[:12]


def uai_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1]:
        return None
    return parts[1]
