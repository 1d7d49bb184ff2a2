"""A registry served by two uvicorn worker processes, in prometheus multiprocess mode: every
scrape, whichever worker answers it, counts the requests of both."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.runtime.test_metrics import metrics_url, sample
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
                httpx.get(metrics_url(process.url), headers=close).text,
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


def test_several_workers_get_a_multiprocess_directory_of_their_own(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR, ``serve`` gives the workers one under the var
    directory: the internal endpoint still answers for both, the public port not at all."""
    process, _ = registry_process(tmp_path, nats_server.url, REGISTRY_WORKERS="2")
    process.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        process.start()
        close = {"Connection": "close"}
        for _ in range(10):
            assert httpx.get(f"{process.url}/healthz", headers=close).status_code == 200
        text = httpx.get(metrics_url(process.url), headers=close).text
        assert sample(text, "certibloc_http_requests_total", route="/healthz") == 10
        public = httpx.get(f"{process.url}/metrics", headers=close)
        assert public.status_code == 404
        assert public.headers["content-type"] == "application/problem+json"
        files = list((tmp_path / "registry" / "metrics" / "registry").glob("*.db"))
        assert len({f.stem.rsplit("_", 1)[1] for f in files}) == 2  # both workers' files
    finally:
        process.stop()
