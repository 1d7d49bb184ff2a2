"""Reading what the dev SMTP sink stored: the e-mails, their delivery keys and the attestations
each one lists (by the public verification URLs in its plain-text part)."""

from __future__ import annotations

import email
import email.policy
import re
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

_VERIFY_URL = re.compile(r"https?://\S+/v/([A-Za-z0-9_-]+)")


def mails(directory: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(directory.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def delivery_key(message: EmailMessage) -> str:
    return str(message["X-Certibloc-Delivery-Key"])


def delivery_keys(directory: Path) -> Counter[str]:
    return Counter(delivery_key(m) for m in mails(directory))


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage), "no plain-text part"
    return str(part.get_content())


def attestation_ids(message: EmailMessage) -> list[str]:
    """The attestations an e-mail lists, in its order (each has one public verification URL)."""
    return _VERIFY_URL.findall(text_of(message))


def mailed_attestations(directory: Path, what: str = ":issued") -> Counter[str]:
    """How many e-mails of a kind (``:issued`` or ``:revoked``) list each attestation."""
    counts: Counter[str] = Counter()
    for message in mails(directory):
        if delivery_key(message).endswith(what):
            counts.update(attestation_ids(message))
    return counts
