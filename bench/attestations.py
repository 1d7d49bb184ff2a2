"""Benchmarks of the attestations service.

    python -m bench.attestations issuance --runs 3      # (a) issuance from a full stream
    python -m bench.attestations verify --runs 3        # (b) /v/{id} JSON and HTML under load
    python -m bench.attestations pdf --runs 3           # (c) PDF first and cached download, verify

(a) The registry first turns a 10,000-line PV (1,000 continuing-education candidates x 10
blocs, all >= 10) into 1,000 decision-recorded events (10 validated blocs each) on its stream;
only then does the attestations service start, and the clock runs until all 10,000
attestations are signed and stored (counted in its store) and until the 1,000
attestations-recorded messages (one per decision) are on its stream.
(b) wrk on loopback, 50 connections, against the service run with 2 uvicorn workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment

from contracts.subjects import STREAMS
from services.runtime.secrets import load_store_key
from tests.registry.harness import post_cohort
from tests.support.processes import NatsServer, ServiceProcess, free_port, registry_process

RESULTS = Path(__file__).parent / "results"
SPLIT = os.environ.get("BENCH_SPLIT_RELAY") == "1"
EXTRA_ENV: dict[str, str] = dict(
    e.split("=", 1) for e in os.environ.get("BENCH_EXTRA_ENV", "").split() if "=" in e
)


def _tracked(db: Path) -> int:
    """The registry position the consumer has recorded (one row: cheap to poll)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT notification_id FROM tracking WHERE application_name = 'registry'"
            ).fetchone()
            return int(row[0]) if row else 0
    except sqlite3.OperationalError:
        return 0


async def _last_position(js: Any, stream: str) -> int:
    info = await js.stream_info(stream)
    msg = await js.get_msg(stream, info.state.last_seq)
    return int(json.loads(msg.data)["position"])


def _count_issued(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT count(*) FROM stored_events WHERE topic LIKE '%Attestation.Issued'"
            ).fetchone()
            return int(row[0])
    except sqlite3.OperationalError:
        return 0


async def _stream_count(js: Any, stream: str) -> int:
    try:
        return int((await js.stream_info(stream)).state.messages)
    except Exception:
        return 0


async def _fill_registry(work: Path, bus: NatsServer, candidates: int, blocs: int) -> None:
    registry, key = await asyncio.to_thread(
        registry_process, work, bus.url, REGISTRY_MAX_BODY_BYTES=str(64 * 2**20), **bus.env
    )
    registry.start()
    try:
        auth = {"Authorization": f"Bearer {key}"}
        await post_cohort(registry.url, auth, "A", candidates, blocs, grade="12,5")
        nc = await bus.connect()
        expected = 1 + 2 * candidates  # the center's key, registrations, decisions
        while await _stream_count(nc.jetstream(), STREAMS["registry"]) < expected:
            await asyncio.sleep(0.05)
        await nc.close()
    finally:
        registry.stop()


def _attestations_env(work: Path, bus: NatsServer, port: int) -> dict[str, str]:
    return {
        "CERTIBLOC_VAR_DIR": str(work / "attestations"),
        **bus.env,
        "ATTESTATIONS_PORT": str(port),
        "ATTESTATIONS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "CERTIBLOC_LOG_LEVEL": "WARNING",
        **EXTRA_ENV,
    }


async def issuance_run(work: Path, candidates: int, blocs: int) -> dict[str, float]:
    nats_server = NatsServer(store=work / "nats")
    nats_server.start()
    try:
        await _fill_registry(work, nats_server, candidates, blocs)
        port = free_port()
        env = _attestations_env(work, nats_server, port)
        service = ServiceProcess("services.attestations", port, env, work / "attestations.log")
        relay: ServiceProcess | None = None
        if SPLIT:
            # The relay in a process of its own, so it does not share a GIL with the consumer.
            relay_port = free_port()
            relay = ServiceProcess(
                "services.attestations",
                relay_port,
                {
                    **env,
                    "ATTESTATIONS_PORT": str(relay_port),
                    "ATTESTATIONS_CONSUMERS_ENABLED": "false",
                },
                work / "attestations-relay.log",
            )
            env["ATTESTATIONS_RELAY_ENABLED"] = "false"
            service = ServiceProcess("services.attestations", port, env, work / "attestations.log")
        expected = candidates * blocs
        db = work / "attestations" / "attestations.sqlite"
        nc = await nats_server.connect()
        last = await _last_position(nc.jetstream(), STREAMS["registry"])
        started = time.perf_counter()
        if relay is not None:
            relay.start()
        service.start()
        try:
            # Timed from the consumer's first recorded position (process start-up, imports and
            # connecting are not issuance) until it recorded the stream's last position.
            while _tracked(db) == 0:
                await asyncio.sleep(0.005)
            first = time.perf_counter()
            while _tracked(db) < last:
                await asyncio.sleep(0.02)
            stored = time.perf_counter()
            assert _count_issued(db) == expected, "not every attestation was issued"
            while await _stream_count(nc.jetstream(), STREAMS["attestations"]) < candidates:
                await asyncio.sleep(0.02)
            published = time.perf_counter()
            rss = service.peak_rss_bytes() / 2**20
        finally:
            await nc.close()
            service.stop()
            if relay is not None:
                relay.stop()
        return {
            "attestations": expected,
            "startup_seconds": first - started,
            "stored_seconds": stored - first,
            "published_seconds": published - first,
            "issued_per_second": expected / (stored - first),
            "peak_rss_mib": rss,
        }
    finally:
        nats_server.stop()


def _wrk(url: str, headers: dict[str, str], seconds: int) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is needed for this benchmark: apt-get install wrk")
    args = [wrk, "-t2", "-c50", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_second": rps,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


async def verify_run(work: Path, seconds: int) -> dict[str, Any]:
    nats_server = NatsServer(store=work / "nats")
    nats_server.start()
    try:
        await _fill_registry(work, nats_server, 100, 10)
        port = free_port()
        env = _attestations_env(work, nats_server, port)
        # Two workers serve the page; they share the store (SQLite WAL).
        env["ATTESTATIONS_WORKERS"] = "2"
        service = ServiceProcess("services.attestations", port, env, work / "attestations.log")
        service.start()
        try:
            db = work / "attestations" / "attestations.sqlite"
            while _count_issued(db) < 1000:
                await asyncio.sleep(0.05)
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                state = conn.execute(
                    "SELECT state FROM stored_events WHERE topic LIKE '%Attestation.Issued' LIMIT 1"
                ).fetchone()[0]
            # The store is encrypted at rest: decrypt with the key the service created.
            key = load_store_key(
                work / "attestations" / "keys" / "attestations-store.key", create=False
            )
            state = AESCipher(Environment(env={"CIPHER_KEY": key})).decrypt(state)
            public_id = json.loads(state)["public_id"]
            url = f"{service.url}/v/{public_id}"
            return {
                "json": _wrk(url, {"Accept": "application/json"}, seconds),
                "html": _wrk(url, {"Accept": "text/html"}, seconds),
            }
        finally:
            service.stop()
    finally:
        nats_server.stop()


async def pdf_run(work: Path, count: int) -> dict[str, float]:
    nats_server = NatsServer(store=work / "nats")
    nats_server.start()
    try:
        await _fill_registry(work, nats_server, count, 1)
        port = free_port()
        service = ServiceProcess(
            "services.attestations",
            port,
            _attestations_env(work, nats_server, port),
            work / "attestations.log",
        )
        service.start()
        try:
            key = (work / "center.key").read_text().strip()
            auth = {"Authorization": f"Bearer {key}"}
            first: list[float] = []
            cached: list[float] = []
            verify_pdf: list[float] = []
            verify_jws: list[float] = []
            async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
                ids: list[str] = []
                for i in range(count):
                    while True:
                        r = await client.get(
                            "/v1/attestations",
                            headers=auth,
                            params={"candidate_number": f"A{i:05d}"},
                        )
                        if r.status_code == 200 and r.json()["attestations"]:
                            ids.append(r.json()["attestations"][0]["id"])
                            break
                        await asyncio.sleep(0.05)
                for public_id in ids:
                    t = time.perf_counter()
                    (
                        await client.get(f"/v1/attestations/{public_id}/pdf", headers=auth)
                    ).raise_for_status()
                    first.append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    pdf = await client.get(f"/v1/attestations/{public_id}/pdf", headers=auth)
                    pdf.raise_for_status()
                    cached.append((time.perf_counter() - t) * 1000)
                    # POST /v1/verify: the PDF (parsed and its PAdES signature checked in a
                    # worker process), then the credential alone.
                    jws = (
                        await client.get(f"/v1/attestations/{public_id}/credential", headers=auth)
                    ).content
                    for body, kind, times in (
                        (pdf.content, "application/pdf", verify_pdf),
                        (jws, "application/vc+jwt", verify_jws),
                    ):
                        t = time.perf_counter()
                        report = await client.post(
                            "/v1/verify", content=body, headers={"content-type": kind}
                        )
                        times.append((time.perf_counter() - t) * 1000)
                        assert report.json()["valid"], report.text
            return {
                "first_download_ms": statistics.median(first),
                "cached_download_ms": statistics.median(cached),
                "verify_pdf_ms": statistics.median(verify_pdf),
                "verify_jws_ms": statistics.median(verify_jws),
            }
        finally:
            service.stop()
    finally:
        nats_server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["issuance", "verify", "pdf"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--blocs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="certibloc-bench-") as tmp:
            work = Path(tmp)
            if args.what == "issuance":
                result = asyncio.run(issuance_run(work, args.candidates, args.blocs))
            elif args.what == "verify":
                result = asyncio.run(verify_run(work, args.seconds))
            else:
                result = asyncio.run(pdf_run(work, 30))
        runs.append(result)
        print(f"run {n + 1}: {json.dumps(result)}")
    summary: dict[str, Any] = {"what": args.what, "runs": runs}
    if args.what == "issuance":
        summary["median_issued_per_second"] = statistics.median(
            r["issued_per_second"] for r in runs
        )
        summary["median_published_seconds"] = statistics.median(
            r["published_seconds"] for r in runs
        )
        print(
            f"issuance: median {summary['median_issued_per_second']:.0f} attestations/s "
            f"signed and stored; all published after "
            f"{summary['median_published_seconds']:.2f} s"
        )
    elif args.what == "verify":
        for kind in ("json", "html"):
            summary[f"median_{kind}_rps"] = statistics.median(
                r[kind]["requests_per_second"] for r in runs
            )
            summary[f"median_{kind}_p99_ms"] = statistics.median(r[kind]["p99_ms"] for r in runs)
            print(
                f"{kind}: median {summary[f'median_{kind}_rps']:.0f} req/s, "
                f"p99 {summary[f'median_{kind}_p99_ms']:.1f} ms"
            )
    else:
        for key in ("first_download_ms", "cached_download_ms", "verify_pdf_ms", "verify_jws_ms"):
            summary[f"median_{key}"] = statistics.median(r[key] for r in runs)
        print(
            f"pdf: first download {summary['median_first_download_ms']:.1f} ms, "
            f"cached {summary['median_cached_download_ms']:.1f} ms; POST /v1/verify: PDF "
            f"{summary['median_verify_pdf_ms']:.1f} ms, credential "
            f"{summary['median_verify_jws_ms']:.1f} ms (medians)"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"attestations-{args.what}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
