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
import logging
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from services.notifications.destinations import Destinations, Refused, pinned

__all__ = [
    "MAX_ATTEMPTS",
    "SECRET_PREFIX",
    "USER_AGENT",
    "Outcome",
    "backoff",
    "deliver",
    "headers",
    "new_secret",
    "public_detail",
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

log = logging.getLogger(__name__)


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


# What a center is told about an attempt: delivered, refused by the receiver with its HTTP
# status, or unreachable; never an address, an exception or a timing, which would make the
# delivery history a port scanner (open, closed and filtered ports look alike here). The
# reason goes to the operator's logs.
DELIVERED = "livré (HTTP {status})"
REFUSED = "refusé par le destinataire (HTTP {status})"
UNREACHABLE = "injoignable"
_STATUS = re.compile(r"HTTP (\d{3})")


def public_detail(detail: str | None) -> str | None:
    """The coarse outcome of a recorded webhook attempt's detail, also for attempts recorded
    before outcomes were coarse (their detail started with ``HTTP <status>`` when there was
    an answer)."""
    if detail is None:
        return None
    found = _STATUS.search(detail)
    if found is None:
        return UNREACHABLE
    status = int(found.group(1))
    return (DELIVERED if 200 <= status <= 299 else REFUSED).format(status=status)


def _unreachable(retryable: bool, reason: str, url: str) -> Outcome:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    log.info("webhook not delivered: %s", reason, extra={"webhook_host": host})
    return Outcome(False, retryable, None, UNREACHABLE)


def _classify(status: int, retry_after: float | None) -> Outcome:
    if 200 <= status <= 299:
        return Outcome(True, False, status, DELIVERED.format(status=status))
    refused = REFUSED.format(status=status)
    if status in _RETRYABLE_4XX or status >= 500 or status < 300:
        # 408, 429, 5xx and anything unexpected may pass later; a redirect is not followed
        # (the URL is what was checked), other 4xx will not change: given up.
        return Outcome(False, True, status, refused, retry_after)
    return Outcome(False, False, status, refused)


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    *,
    destinations: Destinations,
    timeout: float = 5.0,
    now: Callable[[], float] = time.time,
) -> Outcome:
    """One attempt: check the destination (one resolution), POST ``body`` signed for this
    instant to the checked addresses only; 2xx is success, redirects are not followed,
    ``timeout`` bounds the whole attempt (resolution, connection, pool wait, upload, answer).
    ``client`` must come from ``destinations.webhook_client`` (it connects only where the
    check pinned). Never raises for network trouble, a refused destination nor an unusable
    URL, secret or message id: those come back as an ``Outcome`` saying whether another
    attempt could help, with a detail fit for the center."""
    problem = validate_url(url)
    if problem is not None:
        return _unreachable(False, f"invalid URL: {problem}", url)
    try:
        request_headers = headers(secret, msg_id, int(now()), body)
    except ValueError:
        # Retrying cannot fix a malformed secret or message id: give up; no secret in logs.
        return _unreachable(False, "unusable signing secret or message id", url)
    try:
        async with asyncio.timeout(timeout):
            # Refused destinations are retried like unreachable ones: the center's DNS may be
            # fixed, nothing is sent meanwhile, and the attempts look alike from outside.
            destination = await destinations.check(url)
            with pinned(destination):
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
    except Refused as refused:
        return _unreachable(True, f"destination refused: {refused}", url)
    except (TimeoutError, httpx.TimeoutException):
        return _unreachable(True, f"no answer within {timeout:g} s", url)
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as error:
        return _unreachable(False, f"invalid request: {type(error).__name__}", url)
    except httpx.TransportError as error:
        # connection refused or failed, TLS failure, reset: maybe better next time
        return _unreachable(True, f"{type(error).__name__}: {error}", url)


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
    """``None`` when ``url`` is well formed for a webhook endpoint, else why not (in French).

    Where it points is judged apart, on its resolved addresses, at registration and at every
    delivery (``destinations.Destinations.check``).
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
