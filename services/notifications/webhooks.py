"""Standard Webhooks (https://www.standardwebhooks.com), sending side: secrets, symmetric
signatures, delivery of one attempt and its classification, retry back-off, endpoint URL checks.

Signature scheme (spec "Signature scheme" / "Webhook headers"): HMAC-SHA256, keyed with the
base64-decoded part of a ``whsec_`` secret, over ``{msg_id}.{timestamp}.{body}``; sent as
``webhook-signature: v1,<base64>`` next to ``webhook-id`` (stable across retries, the consumer's
idempotency key) and ``webhook-timestamp`` (integer Unix seconds of *this attempt*).

This is our own implementation; the tests check it against the independent ``standardwebhooks``
reference library.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

__all__ = [
    "MAX_ATTEMPTS",
    "SECRET_PREFIX",
    "USER_AGENT",
    "Outcome",
    "backoff",
    "deliver",
    "headers",
    "new_secret",
    "sign",
    "validate_url",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's marker, not a secret
USER_AGENT = "certibloc-webhooks/1"
MAX_ATTEMPTS = 8
MAX_URL_LENGTH = 2048

_SECRET_BYTES = 32
# The spec: a symmetric secret is random, at least 24 bytes (192 bits), 512 bits at most.
_MIN_KEY_BYTES = 24
_MAX_KEY_BYTES = 64
# We never need the receiver's answer body; read at most this much so the pooled connection can
# be reused, and close it rather than read a larger body.
_MAX_RESPONSE_BYTES = 64 * 1024
_RETRYABLE_4XX = frozenset({408, 429})
_SYSTEM_RNG = random.SystemRandom()


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes (shown to the center once)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secret must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not valid base64 after 'whsec_'") from None
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise ValueError(f"webhook secret must decode to {_MIN_KEY_BYTES}..{_MAX_KEY_BYTES} bytes")
    return key


def _check_msg_id(msg_id: str) -> None:
    # The spec: the id and timestamp must not contain "." (the signed content is dot-delimited);
    # it also travels in a header, so printable ASCII without spaces only.
    if not msg_id or "." in msg_id or not all("!" <= c <= "~" for c in msg_id):
        raise ValueError("webhook message id must be non-empty printable ASCII without '.'")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64 HMAC-SHA256>`` signature of ``{msg_id}.{timestamp}.{body}``."""
    _check_msg_id(msg_id)
    signed = f"{msg_id}.{int(timestamp)}.".encode("ascii") + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to."""

    ok: bool
    retryable: bool
    status: int | None
    detail: str
    # Seconds the receiver asked us to wait (``Retry-After``), when it said so on a failure.
    retry_after: float | None = None


def _retry_after(response: httpx.Response, now: float) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _classify(status: int, retry_after: float | None) -> Outcome:
    if 200 <= status <= 299:
        return Outcome(True, False, status, f"HTTP {status} : livré (delivered)")
    if 300 <= status <= 399:
        return Outcome(
            False,
            False,
            status,
            f"HTTP {status} : redirection non suivie, corrigez l'URL du webhook ; abandon "
            "(redirect not followed, giving up)",
        )
    if status == 410:
        return Outcome(
            False,
            False,
            status,
            "HTTP 410 : le destinataire ne veut plus de webhooks ; abandon (gone, giving up)",
        )
    if status == 429:
        return Outcome(
            False,
            True,
            status,
            "HTTP 429 : trop de requêtes, nouvel essai plus tard (rate limited, will retry)",
            retry_after,
        )
    if status == 408:
        return Outcome(
            False,
            True,
            status,
            "HTTP 408 : délai dépassé chez le destinataire, nouvel essai "
            "(request timeout, will retry)",
            retry_after,
        )
    if 400 <= status <= 499:
        return Outcome(
            False,
            False,
            status,
            f"HTTP {status} : refusé par le destinataire ; abandon (rejected, giving up)",
        )
    if 500 <= status <= 599:
        return Outcome(
            False,
            True,
            status,
            f"HTTP {status} : erreur du destinataire, nouvel essai (server error, will retry)",
            retry_after,
        )
    return Outcome(
        False,
        True,
        status,
        f"HTTP {status} : réponse inattendue, nouvel essai (unexpected status, will retry)",
        retry_after,
    )


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    timeout: float = 5.0,
    now: Callable[[], float] = time.time,
) -> Outcome:
    """One attempt: POST ``body`` signed for this instant; 2xx is success, redirects are not
    followed, ``timeout`` bounds the whole attempt (connection, pool wait, upload, answer).
    Never raises for network trouble nor for an unusable URL, secret or message id: those come
    back as an ``Outcome`` saying whether another attempt could help."""
    problem = validate_url(url)
    if problem is not None:
        return Outcome(False, False, None, f"{problem} Abandon (invalid URL, giving up).")
    try:
        request_headers = headers(secret, msg_id, int(now()), body)
    except ValueError:
        # Retrying cannot fix a malformed secret or message id: give up, say why, no secret.
        return Outcome(
            False,
            False,
            None,
            "secret de signature ou identifiant de message inutilisable ; abandon "
            "(unusable signing secret or message id, giving up)",
        )
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(
                "POST",
                url,
                content=body,
                headers=request_headers,
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
            ) as response:
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > _MAX_RESPONSE_BYTES:
                        break
                return _classify(response.status_code, _retry_after(response, now()))
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(
            False,
            True,
            None,
            f"pas de réponse en {timeout:g} s, nouvel essai (timed out, will retry)",
        )
    except httpx.ConnectError:
        return Outcome(
            False,
            True,
            None,
            "connexion impossible (refusée ou injoignable), nouvel essai "
            "(connection failed, will retry)",
        )
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL):
        return Outcome(
            False,
            False,
            None,
            "requête impossible à émettre vers cette URL ; abandon (invalid request, giving up)",
        )
    except httpx.TransportError:
        return Outcome(
            False,
            True,
            None,
            "connexion interrompue par le destinataire, nouvel essai "
            "(connection reset, will retry)",
        )


def backoff(
    attempt: int, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential with full
    jitter, ``uniform(0, min(cap, base * 2**(attempt-1)))``."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    # Past 2**62 the ceiling is the cap for any sane base; this also avoids float overflow.
    ceiling = min(cap, base * float(2 ** min(attempt - 1, 62)))
    return (rng or _SYSTEM_RNG).uniform(0.0, ceiling)


def validate_url(url: str) -> str | None:
    """``None`` when ``url`` is acceptable as a webhook endpoint, else why not (in French).

    Loopback and private addresses are allowed on purpose (dev and tests run on 127.0.0.1);
    SSRF protection belongs to the network the delivery worker runs in (spec, "SSRF").
    """
    if not isinstance(url, str) or not url:
        return "L'URL du webhook est vide."
    if len(url) > MAX_URL_LENGTH:
        return f"L'URL du webhook dépasse {MAX_URL_LENGTH} caractères."
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "L'URL du webhook ne doit contenir ni espace ni caractère de contrôle."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "L'URL du webhook est mal formée (hôte ou port invalide)."
    if parts.scheme.lower() not in {"http", "https"}:
        return "L'URL du webhook doit commencer par https:// (ou http://)."
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        return (
            "L'URL du webhook ne doit pas contenir d'identifiants (utilisateur:mot de passe@) ; "
            "la signature des envois suffit à les authentifier."
        )
    if not parts.hostname:
        return "L'URL du webhook doit indiquer un nom d'hôte."
    if port == 0:
        return "Le port de l'URL du webhook est invalide."
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "L'URL du webhook est mal formée."
    return None
