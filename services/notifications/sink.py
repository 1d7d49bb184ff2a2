"""The dev SMTP sink: every message it accepts becomes ``<directory>/<message-id>.eml``.

One file per Message-ID: a message sent again with the same Message-ID (a retry after a crash)
replaces its file instead of adding one. Files are written to a temporary name (starting with a
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
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

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
            self.store(stem, content)
        except OSError as error:
            log.error("cannot store a message: %s", error)
            return "451 4.3.0 cannot store the message now"
        self.received += 1
        return f"250 2.0.0 OK: stored as {stem}.eml"

    def store(self, stem: str, content: bytes) -> Path:
        """Write atomically (temporary file, then rename); small files, no fsync."""
        final = self.directory / f"{stem}.eml"
        temporary = self.directory / f".{stem}.{uuid.uuid4().hex}.tmp"
        try:
            with temporary.open("wb") as file:
                file.write(content)
            temporary.replace(final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return final


class _SinkController(Controller):
    """A Controller that can listen on port 0 and then knows the port it got."""

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
        return SMTP(
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


def message_count(directory: Path) -> int:
    """How many messages the sink holds (temporary files excluded)."""
    with os.scandir(directory) as entries:
        return sum(1 for e in entries if e.name.endswith(".eml") and not e.name.startswith("."))
