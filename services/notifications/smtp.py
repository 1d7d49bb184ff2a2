"""Sending e-mails over a few long-lived SMTP connections (aiosmtplib).

Opening a connection (TCP, greeting, EHLO, maybe STARTTLS and AUTH) costs more than sending a
short message, so ``SmtpPool`` keeps up to ``size`` connections open and hands one to each
``send()``; concurrent sends use different connections. A connection that broke is dropped and a
new one is opened on next use; one that sat idle for a while is checked with NOOP first.

Failures are ``SmtpDeliveryError``: ``permanent`` when the server refused the message with a
5xx reply (sending it again will not help), otherwise transient (4xx, timeouts, connection
problems, including failures to connect or log in, which say nothing about the message).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import re
import time
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.headerregistry import AddressHeader, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any

import aiosmtplib


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False  # require STARTTLS after connecting
    use_tls: bool = False  # implicit TLS (port 465)
    timeout: float = 10.0  # seconds, per connection attempt and per SMTP command


class SmtpDeliveryError(Exception):
    def __init__(self, permanent: bool, detail: str, *, code: int | None = None) -> None:
        super().__init__(detail)
        self.permanent = permanent
        self.detail = detail
        self.code = code  # the SMTP reply code, when the server gave one


_NETWORK_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


@dataclass
class _Slot:
    client: aiosmtplib.SMTP | None = None
    last_used: float = 0.0


class SmtpPool:
    """A small pool of open aiosmtplib.SMTP connections (size N).

    ``send()`` takes a connection, sends, gives it back. A broken connection is closed and
    replaced on next use; a connection idle for more than ``idle_check`` seconds is checked with
    NOOP before use. When a reused connection turns out to be closed by the server, the message
    is sent once more on a fresh connection (as an HTTP client does on a stale keep-alive).
    """

    def __init__(self, settings: SmtpSettings, size: int = 4, *, idle_check: float = 30.0) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.settings = settings
        self.size = size
        self.idle_check = idle_check
        # LIFO: the most recently used, warm connections first; the others may stay closed.
        self._slots: asyncio.LifoQueue[_Slot] = asyncio.LifoQueue()
        for _ in range(size):
            self._slots.put_nowait(_Slot())
        self._closed = False

    async def send(self, message: EmailMessage) -> None:
        """Send ``message`` to its To/Cc/Bcc recipients; raises SmtpDeliveryError."""
        if self.closed():
            raise SmtpDeliveryError(False, "the SMTP pool is closed")
        slot = await self._slots.get()
        try:
            reused = await self._ready(slot)
            try:
                await self._send_on(slot, message)
            except _StaleConnection as stale:
                if not reused:
                    raise stale.error from stale.__cause__
                await self._ready(slot)
                try:
                    await self._send_on(slot, message)
                except _StaleConnection as again:
                    raise again.error from again.__cause__
        finally:
            if self.closed():  # closed while we were sending
                self._drop(slot)
            self._slots.put_nowait(slot)

    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Say QUIT on the idle connections; connections in use are closed when given back."""
        self._closed = True
        idle: list[_Slot] = []
        while not self._slots.empty():
            idle.append(self._slots.get_nowait())
        try:
            await asyncio.gather(*(self._quit(slot) for slot in idle))
        finally:
            for slot in idle:
                self._slots.put_nowait(slot)

    # --- internals -------------------------------------------------------------------------

    async def _ready(self, slot: _Slot) -> bool:
        """Make sure ``slot`` holds an open connection; True if it is one that was reused."""
        client = slot.client
        if client is not None and client.is_connected:
            if time.monotonic() - slot.last_used < self.idle_check:
                return True
            try:
                await client.noop()
            except _NETWORK_ERRORS:
                self._drop(slot)
            else:
                slot.last_used = time.monotonic()
                return True
        self._drop(slot)
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            start_tls=s.starttls,
            timeout=s.timeout,
        )
        try:
            await client.connect()
            await client._ehlo_or_helo_if_needed()  # the extensions decide how to serialize
        except _NETWORK_ERRORS as error:
            client.close()
            raise SmtpDeliveryError(
                False,
                f"cannot open an SMTP session with {s.host}:{s.port}: {_describe(error)}",
                code=getattr(error, "code", None),
            ) from error
        except BaseException:
            client.close()
            raise
        slot.client = client
        slot.last_used = time.monotonic()
        return False

    async def _send_on(self, slot: _Slot, message: EmailMessage) -> None:
        client = slot.client
        assert client is not None
        try:
            await _transmit(client, message)
        except aiosmtplib.SMTPRecipientsRefused as error:
            # aiosmtplib has reset the envelope (RSET): the connection stays usable.
            codes = [refused.code for refused in error.recipients]
            detail = "; ".join(f"<{r.recipient}>: {r.code} {r.message}" for r in error.recipients)
            raise SmtpDeliveryError(
                all(500 <= code < 600 for code in codes),
                f"recipient refused: {detail}",
                code=codes[0] if codes else None,
            ) from error
        except aiosmtplib.SMTPResponseException as error:
            # Sender refused, data refused (size, content...): the envelope was reset too.
            if error.code == 421 or not client.is_connected:  # 421: the server is closing
                self._drop(slot)
            raise SmtpDeliveryError(
                500 <= error.code < 600, f"refused: {error.code} {error.message}", code=error.code
            ) from error
        except aiosmtplib.SMTPNotSupported as error:
            # e.g. a non-ASCII address and no SMTPUTF8: this server cannot take this message.
            raise SmtpDeliveryError(True, f"not supported by the server: {error}") from error
        except ValueError as error:
            # No From or To, or an address that cannot be used (checked before anything is sent).
            raise SmtpDeliveryError(True, f"unusable message: {error}") from error
        except aiosmtplib.SMTPServerDisconnected as error:
            self._drop(slot)
            failure = SmtpDeliveryError(False, f"connection lost: {_describe(error)}")
            raise _StaleConnection(failure) from error
        except _NETWORK_ERRORS as error:  # timeouts, resets
            self._drop(slot)
            raise SmtpDeliveryError(False, _describe(error)) from error
        except BaseException:  # cancelled midway: the session is in an unknown state
            self._drop(slot)
            raise
        slot.last_used = time.monotonic()

    @staticmethod
    def _drop(slot: _Slot) -> None:
        if slot.client is not None:
            slot.client.close()
            slot.client = None

    async def _quit(self, slot: _Slot) -> None:
        client = slot.client
        if client is None:
            return
        with contextlib.suppress(*_NETWORK_ERRORS):
            await client.quit(timeout=min(self.settings.timeout, 2.0))
        self._drop(slot)


# --- serializing -----------------------------------------------------------------------------
#
# aiosmtplib's send_message() serializes with the stdlib generator, which costs more than the
# SMTP exchange itself (~1 ms for one of our messages: header refolding, then the body written
# line by line). wire_bytes() is the same generator with shortcuts: short ASCII headers are
# written as they are, a non-ASCII Subject or single-address display name becomes base64
# encoded-words (RFC 2047) directly, and bodies get their line ends fixed in one pass. Anything
# unusual (Bcc, Resent-*, non-ASCII addresses, a parsed or legacy message) goes through
# send_message() unchanged.

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
                    last = len(words) - words.rfind("\n")
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


def _envelope(message: EmailMessage) -> tuple[str, list[str]] | None:
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


async def _transmit(client: aiosmtplib.SMTP, message: EmailMessage) -> None:
    envelope = _envelope(message)
    if envelope is None:
        await client.send_message(message)
        return
    eight_bit = client.supports_extension("8bitmime")
    await client.sendmail(
        *envelope,
        wire_bytes(message, eight_bit=eight_bit),
        mail_options=["BODY=8BITMIME"] if eight_bit else [],
    )


class _StaleConnection(Exception):
    """The server closed the connection: worth one more try if the connection was reused."""

    def __init__(self, error: SmtpDeliveryError) -> None:
        super().__init__(error.detail)
        self.error = error


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
