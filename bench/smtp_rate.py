"""Benchmark: e-mails per second through SmtpPool to the local SMTP sink (median of N runs).

    python -m bench.smtp_rate [--messages 5000] [--size 8] [--runs 3] [--in-process]

The messages (one candidate's deliberation e-mail each, listing ten blocs, ~24 kB) are
rendered beforehand as the dispatcher renders them; a run is: a fresh pool, every message sent
concurrently, until the sink has stored them all (one .eml file each). The sink runs in its own
process, as in dev (``--in-process``: in a thread of this process, as in the tests, which then
share one GIL with the sender).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path

from services.notifications.email import (
    AttestationsMail,
    MailItem,
    render,
    template_environment,
)
from services.notifications.sink import message_count, serve_forever, start_sink
from services.notifications.smtp import SmtpPool, SmtpSettings
from services.notifications.wire import WireMail
from services.runtime import tokens

BASE = "http://127.0.0.1:8102"
# One candidate's deliberation: the e-mail lists ten blocs, as for a 10-bloc PV line set.
BLOC_TITLE = "Gérer des relations avec les clients, les usagers et les adhérents"
MAIL = AttestationsMail(
    delivery_key="",
    event="issued",
    to_address="",
    holder_name="Léa Martin",
    certification_title="BAC PRO - Assistance à la gestion des organisations et de leurs activités",
    certification_code="RNCP40705",
    decided_on=date(2026, 7, 3),
    items=(),
    sender="certibloc <no-reply@certibloc.localhost>",
    domain="certibloc.localhost",
    links_expire_on=date(2026, 8, 1),
)
BLOCS_PER_MAIL = 10
# A real personal link token, as the dispatcher puts in each e-mail (same length).
LINK = tokens.mint(
    b"bench only", "0750001A/2026-000001", "a" * 22, 0, ttl_seconds=30 * 86400, now=1_780_000_000
)


def mails(n: int) -> list[AttestationsMail]:
    out = []
    for i in range(n):
        items = []
        for b in range(BLOCS_PER_MAIL):
            aid = f"bench{i:015d}{b:02d}"
            items.append(
                MailItem(
                    kind="bloc",
                    code=f"RNCP40705BC{b + 1:02d}",
                    title=BLOC_TITLE,
                    verify_url=f"{BASE}/v/{aid}",
                    download_url=f"{BASE}/v1/attestations/{aid}/pdf?token={LINK}",
                    credential_url=f"{BASE}/v1/attestations/{aid}/credential?token={LINK}",
                )
            )
        out.append(
            replace(
                MAIL,
                delivery_key=f"mail:bench{i:017d}:issued",
                to_address=f"candidat{i}@example.org",
                items=tuple(items),
            )
        )
    return out


def _sink_process(directory: str, conn: Connection) -> None:
    asyncio.run(serve_forever(Path(directory), "127.0.0.1", 0, started=conn.send))


async def wait_for_files(directory: Path, expected: int, deadline: float) -> None:
    while message_count(directory) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message_count(directory)} of {expected} messages stored")
        await asyncio.sleep(0.005)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(
    port: int, directory: Path, messages: list[EmailMessage | WireMail], size: int
) -> tuple[float, float]:
    """(messages/s, this process's CPU µs per message)."""
    pool = SmtpPool(SmtpSettings(host="127.0.0.1", port=port), size=size)
    start, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(pool.send(m) for m in messages))
    await wait_for_files(directory, len(messages), time.monotonic() + 60)
    elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu
    await pool.close()
    return len(messages) / elapsed, used / len(messages) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=8, help="SMTP connections in the pool")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="sink in a thread")
    parser.add_argument(
        "--directory", type=Path, default=None, help="where the sink's folders go (default: TMPDIR)"
    )
    args = parser.parse_args()

    templates = template_environment()
    batch = mails(args.messages)
    start = time.perf_counter()
    # What the dispatcher sends: render() (the wire bytes, written directly).
    messages = [render(m, templates) for m in batch]
    compose_rate = len(messages) / (time.perf_counter() - start)
    first = messages[0]
    size = len(first.data if isinstance(first, WireMail) else bytes(first))
    print(f"render: {compose_rate:,.0f} messages/s ({size:,} bytes each)")

    rates = []
    with tempfile.TemporaryDirectory(prefix="smtp-bench-", dir=args.directory) as tmp:
        for run in range(args.runs):
            directory = Path(tmp) / f"run{run}"
            directory.mkdir()
            if args.in_process:
                controller, port = start_sink(directory)
                try:
                    rate, cpu = asyncio.run(one_run(port, directory, messages, args.size))
                finally:
                    controller.stop()
            else:
                ctx = multiprocessing.get_context("spawn")
                receive, send = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_sink_process, args=(str(directory), send))
                process.start()
                try:
                    if not receive.poll(30):
                        raise RuntimeError("the sink did not start")
                    port = receive.recv()
                    rate, cpu = asyncio.run(one_run(port, directory, messages, args.size))
                finally:
                    process.terminate()
                    process.join()
            rates.append(rate)
            # With the sink in a thread, the CPU figure covers sender and sink together.
            print(f"run {run + 1}: {rate:,.0f} messages/s (this process: {cpu:,.0f} µs CPU each)")
    where = "sink in a thread" if args.in_process else "sink in its own process"
    print(
        f"send: median {statistics.median(rates):,.0f} messages/s "
        f"({args.messages} messages, pool size {args.size}, {where})"
    )


if __name__ == "__main__":
    main()
