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
import contextlib
import time
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from services.notifications.wire import WireMail, envelope, wire_bytes


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

    async def send(self, message: EmailMessage | WireMail) -> None:
        """Send ``message`` to its To/Cc/Bcc recipients (a WireMail: to its envelope's);
        raises SmtpDeliveryError."""
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

    async def _send_on(self, slot: _Slot, message: EmailMessage | WireMail) -> None:
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


async def _transmit(client: aiosmtplib.SMTP, message: EmailMessage | WireMail) -> None:
    if isinstance(message, WireMail):  # 7-bit clean by construction: no BODY=8BITMIME
        await client.sendmail(message.sender, list(message.recipients), message.data)
        return
    found = envelope(message)
    if found is None:
        await client.send_message(message)
        return
    eight_bit = client.supports_extension("8bitmime")
    await client.sendmail(
        *found,
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
