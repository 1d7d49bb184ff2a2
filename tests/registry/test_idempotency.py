"""``Idempotency-Key`` wherever a center writes: PVs (tests/registry/test_api.py), VAE
decisions and corrections. The same key and body again get the first answer and record
nothing; the same key with another body is a 409; concurrent retries record once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.registry.harness import CENTER_B, JURY, Registry, candidate, full_lines, pv


def _vae(number: str = "V1", **changes: Any) -> dict[str, Any]:
    return {
        "candidate_number": number,
        "certification": "RNCP40705",
        "decided_on": "2026-05-20",
        "jury": JURY,
        "decision": "partielle",
        "blocs": ["RNCP40705BC01", "RNCP40705BC02"],
        **changes,
    }


@pytest.fixture
async def seeded(client: httpx.AsyncClient, registry: Registry) -> dict[str, str]:
    """A VAE candidate and a graded one (their deliberation id), at center A."""
    await client.post(
        "/v1/candidates", json=candidate("V1", access_route="vae"), headers=registry.auth()
    )
    await client.post("/v1/candidates", json=candidate("C1"), headers=registry.auth())
    created = await client.post(
        "/v1/deliberations", json=pv(full_lines("C1")), headers=registry.auth()
    )
    return {"deliberation_id": created.json()["deliberation_id"]}


def _correction(deliberation_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "deliberation_id": deliberation_id,
        "candidate_number": "C1",
        "bloc": "RNCP40705BC01",
        "grade": "8",
        "reason": "Erreur de saisie du correcteur",
        **changes,
    }


Body = Callable[[dict[str, str]], dict[str, Any]]
ROUTES: dict[str, tuple[str, Body, Body]] = {
    "vae-decisions": (
        "/v1/vae-decisions",
        lambda s: _vae(),
        lambda s: _vae(blocs=["RNCP40705BC03"]),
    ),
    "corrections": (
        "/v1/corrections",
        lambda s: _correction(s["deliberation_id"]),
        lambda s: _correction(s["deliberation_id"], grade="7"),
    ),
}


@pytest.mark.parametrize("route", list(ROUTES))
async def test_the_same_key_and_body_get_the_first_answer_and_record_nothing(
    route: str, client: httpx.AsyncClient, registry: Registry, seeded: dict[str, str]
) -> None:
    path, body, other = ROUTES[route]
    headers = {**registry.auth(), "Idempotency-Key": f"{route}-001"}
    first = await client.post(path, json=body(seeded), headers=headers)
    assert first.status_code == 201, first.text
    recorded = registry.notification_count()
    # The same request spelled differently (key order, spacing) is the same request.
    respelled = orjson.dumps(dict(reversed(list(body(seeded).items()))))
    again = await client.post(
        path, content=respelled, headers={**headers, "content-type": "application/json"}
    )
    assert again.status_code == 200 and again.json() == first.json()
    assert registry.notification_count() == recorded
    conflict = await client.post(path, json=other(seeded), headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert "clé d'idempotence" in conflict.json()["detail"]
    assert registry.notification_count() == recorded


@pytest.mark.parametrize("route", list(ROUTES))
async def test_concurrent_retries_with_one_key_record_once(
    route: str, client: httpx.AsyncClient, registry: Registry, seeded: dict[str, str]
) -> None:
    path, body, _ = ROUTES[route]
    headers = {**registry.auth(), "Idempotency-Key": f"{route}-race"}
    before = registry.notification_count()
    answers = await asyncio.gather(
        *(client.post(path, json=body(seeded), headers=headers) for _ in range(6))
    )
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.text for a in answers}) == 1
    assert registry.notification_count() == before + 2  # the change, and its answer


async def test_a_key_is_the_centers_own(
    client: httpx.AsyncClient, registry: Registry, seeded: dict[str, str]
) -> None:
    await client.post(
        "/v1/candidates", json=candidate("V1", access_route="vae"), headers=registry.auth(CENTER_B)
    )
    key = {"Idempotency-Key": "shared-key"}
    a = await client.post("/v1/vae-decisions", json=_vae(), headers={**registry.auth(), **key})
    b = await client.post(
        "/v1/vae-decisions",
        json=_vae(blocs=["RNCP40705BC05"]),
        headers={**registry.auth(CENTER_B), **key},
    )
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["decision_id"] != b.json()["decision_id"]


async def test_a_key_is_printable_ascii_of_bounded_length(
    client: httpx.AsyncClient, registry: Registry, seeded: dict[str, str]
) -> None:
    before = registry.notification_count()
    for bad in ("k" * 256, "clé"):
        response = await client.post(
            "/v1/vae-decisions",
            json=_vae(),
            headers={**registry.auth(), "Idempotency-Key": bad.encode("utf-8")},
        )
        assert response.status_code == 422, response.text
    assert registry.notification_count() == before


async def test_many_writes_to_one_candidate_at_once_never_get_a_500(
    client: httpx.AsyncClient, registry: Registry, seeded: dict[str, str]
) -> None:
    """They race on the candidate's version: the registry retries with random waits; past its
    last attempt it answers 503 with Retry-After, and records nothing for that request."""
    answers = await asyncio.gather(
        *(
            client.post(
                "/v1/vae-decisions",
                json=_vae(blocs=[f"RNCP40705BC{b:02d}"]),
                headers=registry.auth(),
            )
            for b in range(1, 13)
        )
    )
    assert {a.status_code for a in answers} <= {201, 503}, [a.text for a in answers]
    for busy in (a for a in answers if a.status_code == 503):
        assert busy.headers["Retry-After"] == "1"
        assert busy.headers["content-type"] == "application/problem+json"
    decided = (await client.get("/v1/candidates/V1", headers=registry.auth())).json()
    assert len(decided["acquired_blocs"]) == sum(1 for a in answers if a.status_code == 201)
