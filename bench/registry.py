"""Benchmark: a generated 10,000-line PV (1,000 candidates x 10 blocs) posted over HTTP, timed
until every resulting event is on the JetStream stream; SQLite or PostgreSQL; peak RSS.

    python -m bench.registry --store sqlite --runs 3
    python -m bench.registry --store postgres --runs 3

Each run starts from nothing: a fresh nats-server, a fresh store, a fresh registry process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from contracts.subjects import STREAMS
from tests.registry.harness import JURY, candidate
from tests.support.processes import NatsServer, postgres_server, registry_process

RESULTS = Path(__file__).parent / "results"


def generate_pv(candidates: int, blocs: int, seed: int = 40705) -> dict[str, Any]:
    rng = random.Random(seed)
    lines = [
        {
            "candidate_number": f"B{i:05d}",
            "bloc": f"RNCP40705BC{b:02d}",
            "grade": f"{rng.randint(40, 180) / 10:.1f}".replace(".", ","),
        }
        for i in range(candidates)
        for b in range(1, blocs + 1)
    ]
    return {
        "certification": "RNCP40705",
        "session": "2026-06",
        "deliberated_on": "2026-07-03",
        "jury": JURY,
        "lines": lines,
    }


async def one_run(
    store_env: dict[str, str], candidates: int, blocs: int, work: Path
) -> dict[str, float]:
    nats_server = NatsServer(store=work / "nats")
    nats_server.start()
    service, key = await asyncio.to_thread(
        registry_process,
        work,
        nats_server.url,
        REGISTRY_MAX_BODY_BYTES=str(64 * 1024 * 1024),
        **store_env,
        **nats_server.env,
    )
    service.start()
    nc = await nats_server.connect()
    js = nc.jetstream()
    try:
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=service.url, timeout=300) as client:
            sem = asyncio.Semaphore(16)

            async def register(i: int) -> None:
                async with sem:
                    r = await client.post(
                        "/v1/candidates", json=candidate(f"B{i:05d}"), headers=auth
                    )
                    r.raise_for_status()

            await asyncio.gather(*(register(i) for i in range(candidates)))
            stream = STREAMS["registry"]
            baseline = candidates + 1  # registrations and the center's key event
            while (await js.stream_info(stream)).state.messages < baseline:
                await asyncio.sleep(0.01)
            body = json.dumps(generate_pv(candidates, blocs)).encode()
            started = time.perf_counter()
            response = await client.post(
                "/v1/deliberations",
                content=body,
                headers={**auth, "content-type": "application/json"},
            )
            answered = time.perf_counter()
            response.raise_for_status()
            receipt = response.json()
        # One decision-recorded per candidate of the PV (its lines, validated blocs and any
        # award in one event: the candidate's decision is the unit of work).
        expected = baseline + candidates
        while (await js.stream_info(stream)).state.messages < expected:
            await asyncio.sleep(0.01)
        finished = time.perf_counter()
        lines = receipt["lines"]
        return {
            "lines": lines,
            "events": expected - baseline,
            "http_seconds": answered - started,
            "total_seconds": finished - started,
            "lines_per_second": lines / (finished - started),
            "peak_rss_mib": service.peak_rss_bytes() / 2**20,
        }
    finally:
        await nc.close()
        service.stop()
        nats_server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--blocs", type=int, default=10)
    args = parser.parse_args()
    runs: list[dict[str, float]] = []
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="certibloc-bench-")))
        pg = stack.enter_context(postgres_server(root / "pg")) if args.store == "postgres" else None
        for n in range(args.runs):
            work = root / f"run{n}"
            work.mkdir()
            if pg is None:
                store_env = {
                    "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                    "SQLITE_DBNAME": str(work / "registry.sqlite"),
                }
            else:
                store_env = pg.env(pg.new_schema(f"bench_{uuid.uuid4().hex[:8]}"))
            result = asyncio.run(one_run(store_env, args.candidates, args.blocs, work))
            runs.append(result)
            print(
                f"run {n + 1}: {result['lines']} lines in {result['total_seconds']:.2f} s "
                f"({result['lines_per_second']:.0f} lines/s; HTTP answer after "
                f"{result['http_seconds']:.2f} s; peak RSS {result['peak_rss_mib']:.0f} MiB)"
            )
    summary = {
        "store": args.store,
        "lines": runs[0]["lines"],
        "runs": runs,
        "median_lines_per_second": statistics.median(r["lines_per_second"] for r in runs),
        "median_total_seconds": statistics.median(r["total_seconds"] for r in runs),
        "median_http_seconds": statistics.median(r["http_seconds"] for r in runs),
        "max_peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
    }
    print(
        f"{args.store}: median {summary['median_lines_per_second']:.0f} lines/s "
        f"({summary['median_total_seconds']:.2f} s for {summary['lines']} lines), "
        f"peak RSS {summary['max_peak_rss_mib']:.0f} MiB"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"registry-{args.store}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
