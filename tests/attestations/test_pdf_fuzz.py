"""Mutation fuzz of POST /v1/verify with PDFs: a few hundred deterministic mutants of a genuine
signed PDF issued by the running service (truncations, flipped bytes in streams, corrupted
Flate data, xref garbage, deep nesting, a 20,000-entry name tree, a Flate bomb, random bytes).
Every answer is 200 with valid false (or a 4xx), never a 5xx; the service stays responsive."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.attestations.hostile import (
    deep_array_pdf,
    deep_kids_pdf,
    flate_bomb_pdf,
    huge_name_tree_pdf,
    issue_genuine,
    raw_pdf,
    serve_pair,
    verify_pdf,
)
from tests.support.processes import NatsServer

SEED = 20261203
_STREAM = re.compile(rb"stream\r?\n")


def _stream_spans(pdf: bytes) -> list[tuple[int, int, bool]]:
    """(start, end, is_flate) of each stream's data."""
    spans = []
    for match in _STREAM.finditer(pdf):
        if pdf[max(0, match.start() - 3) : match.start()] == b"end":
            continue
        end = pdf.find(b"endstream", match.end())
        if end > match.end():
            head = pdf[max(0, match.start() - 300) : match.start()]
            spans.append((match.end(), end, b"FlateDecode" in head))
    return spans


def mutants(genuine: bytes) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(SEED)
    size = len(genuine)
    spans = _stream_spans(genuine)
    flate = [s for s in spans if s[2]] or spans
    assert spans, "the genuine PDF has streams"

    for i in range(60):  # truncations at many offsets
        cut = 1 + (i * (size - 32)) // 60 + rng.randrange(0, 16)
        yield f"truncated at {cut}", genuine[:cut]
    for _ in range(60):  # flipped bytes inside streams
        start, end, _flate = rng.choice(spans)
        data = bytearray(genuine)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
        yield "stream byte flip", bytes(data)
    for _ in range(30):  # corrupted Flate data: header or body overwritten, or cut short
        start, end, _flate = rng.choice(flate)
        data = bytearray(genuine)
        at = start if rng.random() < 0.5 else rng.randrange(start, end)
        n = min(rng.randint(2, 64), end - at)
        data[at : at + n] = rng.randbytes(n)
        yield "corrupted flate", bytes(data)
        yield "flate cut short", genuine[: start + (end - start) // 2] + genuine[end:]
    xrefs = [m.start() for m in re.finditer(rb"xref", genuine)]
    for _ in range(40):  # xref garbage: tables and startxref offsets overwritten
        at = rng.choice(xrefs) + rng.randrange(0, 80)
        n = rng.randint(1, 40)
        garbage = bytes(rng.choice(b"0123456789 fn\n\r-") for _ in range(n))
        yield "xref garbage", genuine[:at] + garbage + genuine[at + n :]
    for _ in range(20):  # splices: a chunk removed or repeated
        a = rng.randrange(0, size)
        b = min(size, a + rng.randint(1, 2000))
        yield "chunk removed", genuine[:a] + genuine[b:]
        yield "chunk repeated", genuine[:b] + genuine[a:b] + genuine[b:]
    for depth in (64, 5_000):  # deep nesting
        yield f"deep /Kids {depth}", deep_kids_pdf(depth)
    for depth in (1_000, 100_000):
        yield f"deep arrays {depth}", deep_array_pdf(depth)
    yield "20,000-entry name tree", huge_name_tree_pdf()
    yield "flate bomb", flate_bomb_pdf()
    yield "catalog missing", raw_pdf([b"<</Type/Pages/Kids[]/Count 0>>"], root=9)
    yield "garbage update appended", genuine + b"\n1 0 obj\n<</Junk[" + rng.randbytes(500)
    for i in range(40):  # random bytes, half of them claiming to be a PDF
        noise = rng.randbytes(rng.randint(0, 20_000))
        yield "random bytes", (b"%PDF-1.7\n" + noise) if i % 2 else noise


async def test_pdf_mutants_never_get_a_5xx(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    with serve_pair(
        tmp_path, nats_server.url, verify_pdf_workers=2, verify_pdf_time_limit_seconds=2.0
    ) as (registry, att):
        async with httpx.AsyncClient(timeout=60) as http:
            genuine = await issue_genuine(http, registry, att)
            cases = list(mutants(genuine.pdf))
            assert len(cases) >= 300
            assert all(pdf != genuine.pdf for _, pdf in cases)
            gate = asyncio.Semaphore(4)
            done = asyncio.Event()
            failures: list[str] = []

            async def one(name: str, pdf: bytes) -> None:
                async with gate:
                    r = await verify_pdf(http, att, pdf)
                if r.status_code >= 500 or not (
                    400 <= r.status_code < 500 or r.json()["valid"] is False
                ):
                    failures.append(f"{name}: {r.status_code} {r.text[:200]}")

            async def fuzz() -> None:
                try:
                    await asyncio.gather(*(one(name, pdf) for name, pdf in cases))
                finally:
                    done.set()

            async def responsive() -> int:
                polls = 0
                async with httpx.AsyncClient(timeout=1.0) as quick:  # a stall fails it
                    while not done.is_set():
                        assert (await quick.get(f"{att.url}/healthz")).status_code == 200
                        polls += 1
                        await asyncio.sleep(0.05)
                return polls

            polls, _ = await asyncio.gather(responsive(), fuzz())
            assert not failures, failures[:10]
            assert polls > 10
            after = await verify_pdf(http, att, genuine.pdf)
            assert after.status_code == 200 and after.json()["valid"] is True
