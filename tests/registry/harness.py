"""A registry served over real HTTP, on a real NATS, with its own SQLite (or PostgreSQL) store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.subjects import STREAMS
from services.registry.application import RegistryApp
from services.registry.composition import create_http_app
from services.registry.settings import RegistrySettings
from tests.support.processes import ServedApp, free_port

CENTER_A, CENTER_B = "0750001A", "0690002B"
STREAM = STREAMS["registry"]

JURY = {
    "members": [
        {"name": "Mme Leroy", "role": "teacher_public", "present": True},
        {"name": "M. Benali", "role": "teacher_private", "present": True},
        {"name": "Mme Petit", "role": "employer", "present": True},
        {"name": "M. Moreau", "role": "employee", "present": True},
    ]
}


@dataclass
class Registry:
    url: str
    app: RegistryApp
    keys: dict[str, str]

    def auth(self, center: str = CENTER_A) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[center]}"}

    def notification_count(self) -> int:
        return self.app.process_recorder.max_notification_id() or 0


@contextmanager
def serve_registry(var_dir: Path, nats_url: str, **settings: Any) -> Iterator[Registry]:
    settings.setdefault("port", free_port())  # and the metrics port + 1000: not the default's
    config = RegistrySettings(
        var_dir=var_dir, nats_url=nats_url, relay_idle_seconds=0.02, **settings
    )
    http = create_http_app(config)
    app: RegistryApp = http.state.registry
    keys = {}
    for uai in (CENTER_A, CENTER_B):
        app.add_center(uai, f"Centre {uai}")
        keys[uai] = app.issue_key(uai)
    with ServedApp(http, port=config.port) as served:
        yield Registry(served.url, app, keys)


def candidate(number: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "candidate_number": number,
        "birth_name": "Durand",
        "usage_name": None,
        "given_names": ["Léa"],
        "birth_date": "1994-03-12",
        "email": f"{number.lower()}@example.org",
        "certification": "RNCP40705",
        "access_route": "formation_continue",
        "candidate_group": 1,
    }
    body.update(overrides)
    return body


def pv(lines: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "certification": "RNCP40705",
        "session": "2026-06",
        "deliberated_on": "2026-07-03",
        "jury": JURY,
        "lines": lines,
    }
    body.update(overrides)
    return body


def full_lines(number: str, grade: str = "12") -> list[dict[str, Any]]:
    return [
        {"candidate_number": number, "bloc": f"RNCP40705BC{i:02d}", "grade": grade}
        for i in range(1, 13)
    ]


async def stream_events(
    js: JetStreamContext, expected: int, timeout: float = 20
) -> list[dict[str, Any]]:
    """The candidate-related events on the registry stream once there are ``expected`` of them
    (exam-center key events, published when the test centers get their keys, are left out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    out: list[dict[str, Any]] = []
    sub = await js.subscribe(
        "certibloc.registry.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )

    async def take(wait: float) -> bool:
        try:
            msg = await sub.next_msg(timeout=wait)
        except TimeoutError:
            return False
        event = orjson.loads(msg.data)
        if ".exam-center-" not in event["type"]:
            out.append(event)
        return True

    try:
        while len(out) < expected:
            assert loop.time() < deadline, f"stream never reached {expected} events ({len(out)})"
            await take(0.2)
        while await take(0.1):  # anything beyond what was expected is for the caller to see
            pass
    finally:
        await sub.unsubscribe()
    return out


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


async def post_cohort(
    base_url: str,
    auth: dict[str, str],
    prefix: str,
    candidates: int,
    blocs: int,
    grade: str = "11",
    concurrency: int = 16,
) -> None:
    """Register ``candidates`` continuing-education candidates and post one PV giving each
    ``blocs`` blocs graded ``grade``: the bulk input of fault tests and benchmarks."""
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:
        slots = asyncio.Semaphore(concurrency)

        async def register(i: int) -> None:
            async with slots:
                body = candidate(f"{prefix}{i:05d}")
                (await http.post("/v1/candidates", json=body, headers=auth)).raise_for_status()

        await asyncio.gather(*(register(i) for i in range(candidates)))
        lines = [
            {"candidate_number": f"{prefix}{i:05d}", "bloc": f"RNCP40705BC{b:02d}", "grade": grade}
            for i in range(candidates)
            for b in range(1, blocs + 1)
        ]
        response = await http.post("/v1/deliberations", json=pv(lines), headers=auth)
        response.raise_for_status()
