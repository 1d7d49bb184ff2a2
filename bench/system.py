"""End-to-end benchmark: a PV posted over HTTP until every attestation is issued and every
e-mail sent, through the three services as separate processes on a real nats-server, with the
dev SMTP sink as a process too.

    python -m bench.system --lines 10000 --store sqlite --runs 3
    python -m bench.system --lines 100000 --store postgres --runs 1
    python -m bench.system --lines 10000 --store postgres --partitions 4 --replicas 2

The PV (several, of at most 50,000 lines each, for 100,000 lines) gives continuing-education
candidates 10 blocs each, all passed (no diploma: 10 of 12 blocs), so each line is one
validated bloc and one attestation, and each candidate one decision and one e-mail listing
its 10 attestations. Candidates are registered before the clock starts; it runs from the PV's
POST until the sink holds the last e-mail. Each run starts from nothing (fresh nats-server,
stores, processes).

Reported: validated blocs per second; when each stage finished (``attestations_published``:
the attestations stream holds a message for every decision); peak memory (VmHWM) and the CPU
milliseconds per validated bloc of every process, counted from the clock's start (the
candidates' registration excluded); and, measured in the same run on this machine, one
core's Ed25519 signing rate on a 5 kB credential (``bench.signing``) and the end-to-end rate's
ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.signing import signing_rates
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


def _processes(system: System) -> dict[str, Any]:
    pids = {name: process.process for name, process in system.services.items()}
    pids["nats-server"] = system.nats.process
    pids["smtp-sink"] = system.sink.process
    return {name: child for name, child in pids.items() if child is not None}


def _profile(pids: dict[str, int], directory: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy (``pip install py-spy``) on each process until it is stopped: collapsed stacks
    in ``directory/<process>.txt`` (flamegraph.pl or speedscope read them)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(pid),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(directory / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


async def one_run(
    work: Path,
    lines: int,
    postgres: Postgres | None,
    partitions: int,
    replicas: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    candidates = lines // BLOCS
    lines = candidates * BLOCS  # what the PV will hold
    with System(
        work,
        postgres=postgres,
        partitions=partitions,
        replicas={"attestations": replicas, "notifications": replicas},
    ) as system:
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
        cpu_at_start = {n: cpu_seconds(c.pid) for n, c in _processes(system).items()}
        spies = []
        if profile is not None:
            services = {n: c.pid for n, c in _processes(system).items() if n in system.services}
            spies = _profile(services, profile)
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
            # One message per decision on that stream (nothing else: no revocations here),
            # one e-mail per decision.
            while "mails_sent" not in marks:
                now = time.perf_counter() - start
                if "attestations_published" not in marks:
                    info = await js.stream_info(STREAMS["attestations"])
                    if info.state.messages >= candidates:
                        marks["attestations_published"] = now
                if message_count(system.mail_dir) >= candidates:
                    marks["mails_sent"] = now
                assert now < 3600, "not done within an hour"
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            for spy in spies:
                spy.wait(timeout=60)
        memory, cpu_ms = {}, {}
        for name, child in _processes(system).items():
            memory[name] = round(peak_rss_mib(child.pid), 1)
            used = cpu_seconds(child.pid) - cpu_at_start[name]
            cpu_ms[name] = round(1000 * used / lines, 3)
    elapsed = marks["mails_sent"]
    return {
        "lines": lines,
        "seconds": round(elapsed, 2),
        "validated_blocs_per_second": round(lines / elapsed, 1),
        "stages_seconds": {k: round(v, 2) for k, v in marks.items()},
        "peak_rss_mib": memory,
        "cpu_ms_per_bloc": cpu_ms,
        "cpu_ms_per_bloc_total": round(sum(cpu_ms.values()), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=1, help="of every stream")
    parser.add_argument(
        "--replicas", type=int, default=1, help="of the attestations and notifications services"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy every service from the POST to the last e-mail"
    )
    args = parser.parse_args()
    signing = signing_rates()
    print(f"one core, 5 kB credential: {json.dumps(signing)}", flush=True)
    runs = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="certibloc-e2e-")))
        pg = stack.enter_context(postgres_server(tmp / "pg")) if args.store == "postgres" else None
        for n in range(args.runs):
            result = asyncio.run(
                one_run(
                    tmp / f"run{n}",
                    args.lines,
                    pg,
                    args.partitions,
                    args.replicas,
                    args.profile / f"run{n}" if args.profile else None,
                )
            )
            print(f"run {n + 1}: {json.dumps(result)}", flush=True)
            runs.append(result)
    median = statistics.median(r["validated_blocs_per_second"] for r in runs)
    ratio = median / signing["ed25519_per_second"]
    summary = {
        "store": args.store,
        "lines": args.lines,
        "partitions": args.partitions,
        "replicas": args.replicas,
        "signing": signing,
        "runs": runs,
        "median_validated_blocs_per_second": median,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "ratio_to_one_core_signing": round(ratio, 4),
        "median_cpu_ms_per_bloc_total": statistics.median(r["cpu_ms_per_bloc_total"] for r in runs),
        "max_peak_rss_mib": max(max(r["peak_rss_mib"].values()) for r in runs),
    }
    print(
        f"{args.lines} lines on {args.store} ({args.partitions} partitions, {args.replicas} "
        f"replicas): median {median:.0f} validated blocs/s end to end, 1/{1 / ratio:.1f} of "
        f"one core's {signing['ed25519_per_second']:.0f} Ed25519 signatures/s; "
        f"{summary['median_cpu_ms_per_bloc_total']} ms CPU per bloc over all processes; "
        f"peak RSS {summary['max_peak_rss_mib']} MiB"
    )
    RESULTS.mkdir(exist_ok=True)
    shape = (
        "" if (args.partitions, args.replicas) == (1, 1) else f"-p{args.partitions}r{args.replicas}"
    )
    out = RESULTS / f"system-{args.store}-{args.lines}{shape}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
