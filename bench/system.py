"""End-to-end benchmark: a PV posted over HTTP until every attestation is issued and every
e-mail sent, through the three services as separate processes on a real nats-server, with the
dev SMTP sink as a process too.

    python -m bench.system --lines 10000 --store sqlite --runs 3
    python -m bench.system --lines 100000 --store postgres --runs 1

The PV (several, of at most 50,000 lines each, for 100,000 lines) gives continuing-education
candidates 10 blocs each, all passed (no diploma: 10 of 12
blocs), so each line is one validated bloc, one attestation and one e-mail. Candidates are
registered before the clock starts; it runs from the PV's POST until the sink holds the last
e-mail. Reported: validated blocs per second, when each stage finished (`attestations_published`:
the attestations stream holds them all), peak memory (VmHWM) and CPU time
of every process. Each run starts from nothing (fresh nats-server, stores, processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from contracts.subjects import STREAMS
from services.notifications.sink import message_count
from services.registry.domain.pv import PV_LINES_MAX
from tests.registry.harness import candidate, pv
from tests.support.processes import Postgres, postgres_server
from tests.support.system import System

RESULTS = Path(__file__).parent / "results"
BLOCS = 10


async def register(system: System, candidates: int) -> None:
    async with httpx.AsyncClient(base_url=system.url("registry"), timeout=60) as http:
        slots = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with slots:
                r = await http.post(
                    "/v1/candidates", json=candidate(f"B{i:06d}"), headers=system.auth
                )
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(candidates)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_run(work: Path, lines: int, postgres: Postgres | None) -> dict[str, Any]:
    candidates = lines // BLOCS
    lines = candidates * BLOCS  # what the PV will hold
    with System(work, postgres=postgres) as system:
        await register(system, candidates)
        # A PV holds at most PV_LINES_MAX lines: a larger run posts several, one after the
        # other, as a large academy would.
        per_pv = PV_LINES_MAX // BLOCS
        bodies = [
            pv(
                [
                    {
                        "candidate_number": f"B{i:06d}",
                        "bloc": f"RNCP40705BC{b:02d}",
                        "grade": "12,5",
                    }
                    for i in range(first, min(first + per_pv, candidates))
                    for b in range(1, BLOCS + 1)
                ]
            )
            for first in range(0, candidates, per_pv)
        ]
        nc = await system.nats.connect()
        js = nc.jetstream()
        marks: dict[str, float] = {}
        try:
            start = time.perf_counter()
            async with httpx.AsyncClient(timeout=600) as http:
                for k, body in enumerate(bodies):
                    r = await http.post(
                        f"{system.url('registry')}/v1/deliberations",
                        json=body,
                        headers={**system.auth, "Idempotency-Key": f"bench-{k}"},
                    )
                    r.raise_for_status()
            marks["pv_accepted"] = time.perf_counter() - start
            issued_target = lines  # plus nothing else on that stream: no revocations here
            while "mails_sent" not in marks:
                now = time.perf_counter() - start
                if "attestations_published" not in marks:
                    info = await js.stream_info(STREAMS["attestations"])
                    if info.state.messages >= issued_target:
                        marks["attestations_published"] = now
                if message_count(system.mail_dir) >= lines:
                    marks["mails_sent"] = now
                assert now < 3600, "not done within an hour"
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
        pids = {name: process.process for name, process in system.services.items()}
        pids["nats-server"] = system.nats.process
        pids["smtp-sink"] = system.sink.process
        memory, cpu = {}, {}
        for name, child in pids.items():
            if child is not None:
                memory[name] = round(peak_rss_mib(child.pid), 1)
                cpu[name] = round(cpu_seconds(child.pid), 1)
    elapsed = marks["mails_sent"]
    return {
        "lines": lines,
        "seconds": round(elapsed, 2),
        "validated_blocs_per_second": round(lines / elapsed, 1),
        "stages_seconds": {k: round(v, 2) for k, v in marks.items()},
        "peak_rss_mib": memory,
        "cpu_seconds": cpu,  # whole life of each process, candidates' registration included
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="certibloc-e2e-")))
        pg = stack.enter_context(postgres_server(tmp / "pg")) if args.store == "postgres" else None
        for n in range(args.runs):
            result = asyncio.run(one_run(tmp / f"run{n}", args.lines, pg))
            print(f"run {n + 1}: {json.dumps(result)}", flush=True)
            runs.append(result)
    median = statistics.median(r["validated_blocs_per_second"] for r in runs)
    summary = {
        "store": args.store,
        "lines": args.lines,
        "runs": runs,
        "median_validated_blocs_per_second": median,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
    }
    print(f"{args.lines} lines on {args.store}: median {median:.0f} validated blocs/s end to end")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"system-{args.store}-{args.lines}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
