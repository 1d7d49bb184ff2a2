"""A registry served by two uvicorn worker processes, in prometheus multiprocess mode: every
scrape, whichever worker answers it, counts the requests of both."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.runtime.test_metrics import sample
from tests.support.processes import NatsServer, registry_process


def test_two_workers_answer_for_both(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_1.db").write_bytes(b"left by an earlier run")
    process, _ = registry_process(
        tmp_path, nats_server.url, REGISTRY_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(prom)
    )
    try:
        process.start()
        close = {"Connection": "close"}  # a new connection each time: either worker may answer
        for _ in range(30):
            assert httpx.get(f"{process.url}/healthz", headers=close).status_code == 200
        seen = {
            sample(
                httpx.get(f"{process.url}/metrics", headers=close).text,
                "certibloc_http_requests_total",
                route="/healthz",
                status="200",
            )
            for _ in range(6)
        }
        assert seen == {30.0}
        pids = {p.stem.rsplit("_", 1)[1] for p in prom.glob("*.db")}
        assert len(pids) == 2 and "1" not in pids, pids  # both workers; the stale file gone
    finally:
        process.stop()
