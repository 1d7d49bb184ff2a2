"""The dev SMTP sink: every message it accepts becomes ``<directory>/<message-id>.eml``.

One file per Message-ID: a message sent again with the same Message-ID (a retry after a crash)
replaces its file instead of adding one. Every reception is also one line of
``<directory>/receptions.log`` (the Message-ID's file name), so tests can tell "sent once" from
"sent again and recognised". Files are written to a temporary name (starting with a
dot, ending in ``.tmp``) and renamed, so a reader never sees half a message; there is no fsync,
this is a development tool that must keep up with benchmarks.

    python -m services.notifications smtp-sink     # uses serve_forever()
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

log = logging.getLogger(__name__)

JOURNAL = "receptions.log"
SERVER_NAME = "certibloc-sink"  # the greeting's host name (aiosmtpd would look up the FQDN)

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+=-]")


def message_id_of(content: bytes) -> str | None:
    """The Message-ID header of a raw message (the header section only), or None."""
    end = content.find(b"\r\n\r\n")
    if end < 0:
        end = content.find(b"\n\n")
    head = content if end < 0 else content[:end]
    found = _MESSAGE_ID.search(head)
    if found is None:
        return None
    value = b" ".join(found.group(1).split()).decode("utf-8", errors="replace")
    return value or None


def file_stem(message_id: str) -> str:
    """A file name for a Message-ID: the id itself when it is made of safe characters.

    ``<9f86d081884c7d65@certibloc.localhost>`` -> ``9f86d081884c7d65@certibloc.localhost``;
    anything else is replaced by ``_`` and a digest of the original is appended, so two ids
    never share a file.
    """
    core = message_id.strip().removeprefix("<").removesuffix(">")
    safe = _UNSAFE.sub("_", core)[:160].lstrip(".")
    if safe != core or not safe:
        digest = hashlib.sha256(message_id.encode("utf-8", errors="surrogateescape")).hexdigest()
        safe = f"{safe}-{digest[:16]}" if safe else digest[:32]
    return safe


class MailSink:
    """aiosmtpd handler storing each message as ``<directory>/<safe message-id>.eml``.

    ``refused_recipients``: addresses answered with ``550`` at RCPT (to exercise bounces).
    """

    def __init__(self, directory: Path, *, refused_recipients: Iterable[str] = ()) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.refused_recipients = frozenset(address.lower() for address in refused_recipients)
        self.received = 0
        # Line-buffered: a line is on disk (page cache) when the 250 reply goes out.
        self._journal = (self.directory / JOURNAL).open("a", buffering=1, encoding="ascii")

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self.refused_recipients:
            return f"550 5.1.1 <{address}>: recipient refused"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        found = message_id_of(content)
        stem = file_stem(found) if found else uuid.uuid4().hex
        try:
            # Synchronous: a small file without fsync; handing it to a thread costs more.
            self.store(stem, content)
        except OSError as error:
            log.error("cannot store a message: %s", error)
            return "451 4.3.0 cannot store the message now"
        self.received += 1
        self._journal.write(f"{stem}\n")
        return f"250 2.0.0 OK: stored as {stem}.eml"

    def store(self, stem: str, content: bytes) -> Path:
        """Write atomically (temporary file, then rename); small files, no fsync."""
        final = self.directory / f"{stem}.eml"
        temporary = self.directory / f".{stem}.{uuid.uuid4().hex}.tmp"
        try:
            with temporary.open("xb") as file:
                file.write(content)
            temporary.replace(final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return final


class SinkSMTP(SMTP):
    """aiosmtpd's SMTP with a DATA reader that takes the message in blocks, not line by line.

    aiosmtpd reads DATA one line at a time (a StreamReader call and a few Python statements per
    line), which is most of its work for a 5 kB e-mail. This version reads what has arrived,
    looks for the end marker and undoes the dot-stuffing with one ``replace``; the envelope,
    hooks and replies are aiosmtpd's. Lines longer than 1,000 octets and messages larger than
    ``data_size_limit`` are refused as aiosmtpd does (500 and 552).
    """

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 (aiosmtpd's command method)
        if self._decode_data:
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        read = await self._read_data()
        if read is None:  # the connection was lost
            return
        data, too_much = read
        if too_much:
            await self.push("552 Error: Too much mail data")
            self.envelope = self._create_envelope()
            return
        if _longest_line(data) > self.line_length_limit - 2:  # the limit counts the CRLF
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            self.envelope = self._create_envelope()
            return
        content = data.replace(b"\r\n..", b"\r\n.")
        if content.startswith(b".."):
            content = content[1:]
        self.envelope.content = content
        self.envelope.original_content = content
        status: Any = MISSING
        if "DATA" in self._handle_hooks:
            status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes, bool] | None:
        """The message up to the ``CRLF.CRLF`` end marker (its last CRLF included), and whether
        it was larger than ``data_size_limit`` (then it is read to the end but not kept)."""
        limit = self.data_size_limit
        buffer = bytearray()
        too_much = False
        start = 0
        while True:
            block = await self._reader.read(1 << 16)
            if not block:
                return None
            buffer += block
            if not too_much and buffer.startswith(b".\r\n"):  # an empty message
                end, after = 0, 3
                break
            found = buffer.find(b"\r\n.\r\n", start)
            if found >= 0:
                end, after = found + 2, found + 5
                break
            if limit and len(buffer) > limit + 5:
                too_much = True
                del buffer[:-4]  # keep what may be the start of the end marker
            start = max(0, len(buffer) - 4)
        if len(buffer) > after:
            # A client that did not wait for our reply (we do not offer PIPELINING): what
            # follows the message is the next command.
            self._reader.feed_data(bytes(buffer[after:]))
        data = bytes(buffer[:end])
        return data, too_much or bool(limit and len(data) > limit)


def _longest_line(data: bytes) -> int:
    if len(data) < 998:
        return len(data)
    return max(map(len, data.split(b"\r\n")))


class _SinkController(Controller):
    """A Controller that can listen on port 0 and then knows the port it got."""

    def factory(self) -> SMTP:
        return SinkSMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Coroutine[Any, Any, asyncio.AbstractServer]:
        return self._listen()

    async def _listen(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
        )
        self.port = int(server.sockets[0].getsockname()[1])
        return server


def start_sink(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    refused_recipients: Iterable[str] = (),
) -> tuple[Controller, int]:
    """Run a sink in a thread (tests, dev); port 0 picks a free port. Stop with ``.stop()``."""
    controller = _SinkController(
        MailSink(directory, refused_recipients=refused_recipients),
        hostname=host,
        port=port,
        server_hostname=SERVER_NAME,
        enable_SMTPUTF8=True,
        decode_data=False,
    )
    controller.start()
    return controller, controller.port


async def serve_forever(
    directory: Path,
    host: str,
    port: int,
    *,
    refused_recipients: Iterable[str] = (),
    started: Callable[[int], None] | None = None,
) -> None:
    """Run a sink in this event loop until cancelled; ``started(port)`` once it listens."""
    handler = MailSink(directory, refused_recipients=refused_recipients)
    loop = asyncio.get_running_loop()
    # aiosmtpd logs every command at INFO: far too much for a sink under load.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    def protocol() -> SMTP:
        return SinkSMTP(
            handler,
            hostname=SERVER_NAME,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=loop,
        )

    server = await loop.create_server(protocol, host=host, port=port)
    bound = int(server.sockets[0].getsockname()[1])
    log.info("SMTP sink listening on %s:%d, storing into %s", host, bound, handler.directory)
    if started is not None:
        started(bound)
    async with server:
        await server.serve_forever()


def receptions(directory: Path) -> Counter[str]:
    """How many times each message (by file stem) was received, resends included."""
    journal = directory / JOURNAL
    if not journal.exists():
        return Counter()
    return Counter(journal.read_text(encoding="ascii").split())


def message_count(directory: Path) -> int:
    """How many messages the sink holds (temporary files excluded)."""
    with os.scandir(directory) as entries:
        return sum(1 for e in entries if e.name.endswith(".eml") and not e.name.startswith("."))
