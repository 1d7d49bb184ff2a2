"""Messages as they go over SMTP: bytes with CRLF line ends, folded and encoded headers.

Two ways to get there, which give the same message (a test holds them to it: the same header
lines, the same parts once decoded):

- ``wire_bytes(message)`` serializes an ``EmailMessage`` with the stdlib generator plus shortcuts:
  short ASCII headers are written as they are, a non-ASCII Subject or single-address display
  name becomes base64 encoded-words (RFC 2047) directly, and bodies get their line ends fixed in
  one pass. aiosmtplib's own ``send_message()`` costs more than the SMTP exchange (~1 ms).
- ``attestation_mail_bytes(...)`` writes our attestation e-mail directly from its parts. Building
  an ``EmailMessage`` (header registry parsing, content manager) costs ~1.8 ms per message, which
  alone capped a dispatcher's event loop well under 1,000 e-mails/s; writing it costs ~0.1 ms.
  It declines (returns None) whenever an input is unusual — a display name with specials, a
  long ASCII header, an address outside the plain dot-atom form — and the caller then builds the
  ``EmailMessage``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import re
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.headerregistry import AddressHeader, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any

MAX_LINE = 78  # RFC 5322 recommended line length; EmailPolicy's default folding limit


_EW_OVERHEAD = len("=?utf-8?b??=")
_NEWLINES = re.compile(r"\r\n|\r|\n")  # what the generator's _write_lines() splits on


def _encoded_words(text: str, first_line_room: int) -> str:
    """``text`` as base64 encoded-words of at most 75 characters, folded on lines of 78."""
    data = text.encode("utf-8")
    words: list[str] = []
    room = min(75, first_line_room)
    start = 0
    while True:
        end = start + max(3, (room - _EW_OVERHEAD) // 4 * 3)
        if end >= len(data):
            words.append(f"=?utf-8?b?{base64.b64encode(data[start:]).decode()}?=")
            # Folding whitespace between encoded-words is not part of the text (RFC 2047 6.2).
            return "\r\n ".join(words)
        while end > start + 1 and data[end] & 0xC0 == 0x80:  # never cut inside a character
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode()}?=")
        start = end
        room = 75  # a continuation line: one space, then the word


def _last_line_length(name: str, words: str) -> int:
    """Length of the header's last line so far: ``Name: words`` or its last continuation."""
    if "\n" not in words:
        return len(name) + 2 + len(words)
    return len(words) - words.rfind("\n") - 1


class _WirePolicy(EmailPolicy):
    def fold_binary(self, name: str, value: str) -> bytes:
        limit = self.max_line_length or 78
        if "\r" not in value and "\n" not in value:
            if value.isascii():
                if len(name) + 2 + len(value) <= limit:
                    return f"{name}: {value}\r\n".encode("ascii")
            elif isinstance(value, UnstructuredHeader) and len(name) < 60:
                words = _encoded_words(str(value), limit - len(name) - 2)
                return f"{name}: {words}\r\n".encode("ascii")
            elif isinstance(value, AddressHeader) and len(value.addresses) == 1 and len(name) < 60:
                address = value.addresses[0]
                if address.addr_spec.isascii() and value.groups[0].display_name is None:
                    words = _encoded_words(address.display_name, limit - len(name) - 2)
                    last = _last_line_length(name, words)
                    space = " " if last + len(address.addr_spec) + 3 <= limit else "\r\n "
                    return f"{name}: {words}{space}<{address.addr_spec}>\r\n".encode("ascii")
        return super().fold_binary(name, value)


class _WireGenerator(BytesGenerator):
    def _write_lines(self, lines: str) -> None:
        # The stdlib splits the body into lines and writes them one by one; same result.
        if lines:
            self.write(_NEWLINES.sub("\r\n", lines))


_WIRE_8BIT = _WirePolicy(linesep="\r\n")
_WIRE_7BIT = _WirePolicy(linesep="\r\n", cte_type="7bit")


def wire_bytes(message: EmailMessage, *, eight_bit: bool = True) -> bytes:
    """The message as it goes over SMTP (CRLF line ends, folded and encoded headers)."""
    buffer = io.BytesIO()
    _WireGenerator(buffer, policy=_WIRE_8BIT if eight_bit else _WIRE_7BIT).flatten(message)
    return buffer.getvalue()


def envelope(message: EmailMessage) -> tuple[str, list[str]] | None:
    """Sender and recipients as send_message() would take them, when the fast path applies."""
    if not isinstance(message.policy, EmailPolicy):
        return None
    origin: dict[str, Any] = {}
    recipients: list[str] = []
    for name, value in message.raw_items():
        key = name.lower()
        if key == "bcc" or key.startswith("resent-"):
            return None
        if key in ("to", "cc", "from", "sender"):
            if not isinstance(value, AddressHeader):  # e.g. a parsed message: raw strings
                return None
            if key in ("to", "cc"):
                recipients.extend(address.addr_spec for address in value.addresses)
            else:
                origin[key] = value
    header = origin.get("sender") or origin.get("from")
    if header is None or len(header.addresses) != 1 or not recipients:
        return None
    sender: str = header.addresses[0].addr_spec
    if not sender.isascii() or not all(r.isascii() for r in recipients):
        return None
    return sender, recipients


@dataclass(frozen=True)
class WireMail:
    """A message ready for ``sendmail``: envelope sender, recipients and the bytes."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes


# Plain dot-atom addresses (RFC 5322 3.2.3) with an ASCII domain: what the fast path writes.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")  # atext and spaces: no quoting


@functools.lru_cache(maxsize=16)
def _from_line(sender: str) -> tuple[bytes, str]:
    """The From line and the envelope sender, via the stdlib once per sender."""
    message = EmailMessage()
    message["From"] = sender
    header = message["From"]
    assert isinstance(header, AddressHeader)
    if len(header.addresses) != 1:
        raise ValueError(f"sender must be one address: {sender!r}")
    line = wire_bytes(message).split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return line, header.addresses[0].addr_spec


def sender_address(sender: str) -> str:
    """The envelope sender of a ``From`` value; ValueError if it is not one usable address."""
    return _from_line(sender)[1]


def _to_line(display_name: str, address: str) -> str | None:
    room = MAX_LINE - len("To: ")
    if display_name.isascii():
        if not _PLAIN_NAME.fullmatch(display_name) or display_name != display_name.strip():
            return None
        value = f"{display_name} <{address}>" if display_name else address
        return f"To: {value}\r\n" if len(value) <= room else None
    words = _encoded_words(display_name, room)
    last = _last_line_length("To", words)
    space = " " if last + len(address) + 3 <= MAX_LINE else "\r\n "
    return f"To: {words}{space}<{address}>\r\n"


def _unstructured_line(name: str, value: str) -> str | None:
    if value.isascii():
        if len(name) + 2 + len(value) > MAX_LINE or value != value.strip():
            return None
        return f"{name}: {value}\r\n"
    return f"{name}: {_encoded_words(value, MAX_LINE - len(name) - 2)}\r\n"


def _qp_part(content_type: str, text: str, *, mime_version: bool) -> str:
    # LF lines, then CRLF on the wire. binascii's quoted-printable (C) rather than the stdlib
    # generator's email.quoprimime (Python, ~1.3 ms for a 10-attestation e-mail's two parts,
    # more than the rest of the writing): lines of at most 76 characters (RFC 2045), a lone
    # "." line encoded; the same text once decoded (tests compare the parts read back).
    lines = text.encode("utf-8").splitlines()
    body = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True).decode("ascii")
    head = (
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
    )
    if mime_version:  # the stdlib's add_alternative() leaves one on the second part
        head += "MIME-Version: 1.0\r\n"
    return head + "\r\n" + body.replace("\n", "\r\n")


def attestation_mail_bytes(
    *,
    sender: str,
    to_name: str,
    to_address: str,
    subject: str,
    date: str,
    message_id: str,
    delivery_key: str,
    boundary: str,
    text: str,
    html: str,
    language: str = "fr",
) -> WireMail | None:
    """The multipart/alternative message ``compose()`` builds, written directly; None when an
    input needs the stdlib's care (see the module docstring)."""
    if not _PLAIN_ADDRESS.fullmatch(to_address):
        return None
    to = _to_line(to_name, to_address)
    subject_line = _unstructured_line("Subject", subject)
    key_line = _unstructured_line("X-Certibloc-Delivery-Key", delivery_key)
    if to is None or subject_line is None or key_line is None or not message_id.isascii():
        return None
    from_line, envelope_sender = _from_line(sender)
    head = (
        f"{to}{subject_line}Date: {date}\r\nMessage-ID: {message_id}\r\n"
        "Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n"
        f"{key_line}MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        f"Content-Language: {language}\r\n\r\n"
        f"--{boundary}\r\n"
        f"{_qp_part('text/plain', text, mime_version=False)}\r\n"
        f"--{boundary}\r\n"
        f"{_qp_part('text/html', html, mime_version=True)}\r\n"
        f"--{boundary}--\r\n"
    )
    return WireMail(envelope_sender, (to_address,), from_line + head.encode("ascii"))
