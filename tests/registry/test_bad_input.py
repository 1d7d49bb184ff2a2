"""Every bad input the API can get: a clear 4xx problem+json, and nothing recorded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.registry.harness import CENTER_B, JURY, Registry, candidate, full_lines, pv


@pytest.fixture
async def seeded(client: httpx.AsyncClient, registry: Registry) -> Registry:
    await client.post("/v1/candidates", json=candidate("C1"), headers=registry.auth())
    await client.post("/v1/candidates", json=candidate("B1"), headers=registry.auth(CENTER_B))
    return registry


def line(number: str = "C1", bloc: str = "RNCP40705BC01", grade: Any = "12") -> dict[str, Any]:
    return {"candidate_number": number, "bloc": bloc, "grade": grade}


Send = Callable[[httpx.AsyncClient, Registry], Awaitable[httpx.Response]]


def post_pv(body: Any, **kw: Any) -> Send:
    async def send(client: httpx.AsyncClient, registry: Registry) -> httpx.Response:
        return await client.post("/v1/deliberations", json=body, headers=registry.auth(), **kw)

    return send


def raw(content: bytes, content_type: str = "application/json", auth: bool = True) -> Send:
    async def send(client: httpx.AsyncClient, registry: Registry) -> httpx.Response:
        headers = {"content-type": content_type, **(registry.auth() if auth else {})}
        return await client.post("/v1/deliberations", content=content, headers=headers)

    return send


def with_key(key: str | None) -> Send:
    async def send(client: httpx.AsyncClient, registry: Registry) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return await client.post("/v1/deliberations", json=pv([line()]), headers=headers)

    return send


def bad_jury(members: list[dict[str, Any]], exception: bool = False) -> dict[str, Any]:
    return {"members": members, "absence_exception": exception}


ONE_THIRD_BROKEN = [
    {"name": "A", "role": "teacher_public"},
    {"name": "B", "role": "teacher_public"},
    {"name": "C", "role": "teacher_private"},
    {"name": "D", "role": "teacher_public"},
    {"name": "E", "role": "employer"},
    {"name": "F", "role": "employee"},
    {"name": "G", "role": "teacher_public"},
]
ABSENT_EMPLOYEE = [*JURY["members"][:3], {**JURY["members"][3], "present": False}]

CASES: dict[str, tuple[Send, int, str]] = {
    "malformed JSON": (raw(b'{"certification": "RNCP40705", "lines": [}'), 400, "JSON valide"),
    "not an object": (raw(b"[1, 2]"), 422, "objet JSON"),
    "missing field": (
        post_pv({"certification": "RNCP40705", "lines": []}),
        422,
        "champs invalides",
    ),
    "unknown bloc": (post_pv(pv([line(bloc="RNCP40705BC99")])), 422, "bloc inconnu"),
    "grade 21": (post_pv(pv([line(grade=21)])), 422, "hors de l'échelle"),
    "grade -1": (post_pv(pv([line(grade=-1)])), 422, "note invalide"),
    "grade dix": (post_pv(pv([line(grade="dix")])), 422, "« dix »"),
    "duplicate line": (post_pv(pv([line(), line(grade="14")])), 422, "doublon"),
    "another center's candidate": (post_pv(pv([line(number="B1")])), 422, "inconnu pour ce centre"),
    "unknown candidate": (post_pv(pv([line(number="NOPE1")])), 422, "inconnu pour ce centre"),
    "session outside validity window": (
        post_pv(pv([line()], session="2029-06")),
        422,
        "hors de la période",
    ),
    "jury without a third of professionals": (
        post_pv(pv([line()], jury=bad_jury(ONE_THIRD_BROKEN))),
        422,
        "un tiers",
    ),
    "jury with absences and no exception": (
        post_pv(pv([line()], jury=bad_jury(ABSENT_EMPLOYEE))),
        422,
        "exception d'absence",
    ),
    "unknown modality": (post_pv(pv([{**line(), "modality": "oral"}])), 422, "modalité inconnue"),
    "modality not the candidate group's": (
        post_pv(pv([{**line(), "modality": "ponctuel_ecrit"}])),
        422,
        "référentiel",
    ),
    "empty PV": (post_pv(pv([])), 422, "aucune ligne"),
    "oversized body": (raw(b"{" + b" " * (9 * 1024 * 1024) + b"}"), 413, "taille maximale"),
    "wrong content type": (raw(b"candidate_number;bloc;grade", "text/csv"), 415, "multipart"),
    "missing API key": (with_key(None), 401, "Clé d'API manquante"),
    "wrong API key": (with_key("cbk_0750001A_not-a-real-key"), 401, "inconnue ou révoquée"),
    "garbage API key": (with_key("hello"), 401, "inconnue ou révoquée"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_is_refused_clearly_and_changes_nothing(
    case: str, client: httpx.AsyncClient, seeded: Registry
) -> None:
    send, status, message = CASES[case]
    before = seeded.notification_count()
    response = await send(client, seeded)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    text = problem["detail"] + " ".join(e["reason"] for e in problem.get("errors", []))
    assert message in text
    assert seeded.notification_count() == before


async def test_every_bad_line_is_reported_with_its_number(
    client: httpx.AsyncClient, seeded: Registry
) -> None:
    lines = [line(), line(bloc="X"), line(grade="vingt", bloc="RNCP40705BC02"), line()]
    response = await client.post("/v1/deliberations", json=pv(lines), headers=seeded.auth())
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "bloc"), (3, "grade"), (4, "bloc")]


async def test_csv_errors_name_the_file_line(client: httpx.AsyncClient, seeded: Registry) -> None:
    meta = pv([])
    del meta["lines"]
    csv_text = (
        "candidate_number;bloc;grade\nC1;RNCP40705BC01;12\nC1;RNCP40705BC02;21\nC1;RNCP40705BC03\n"
    )
    response = await client.post(
        "/v1/deliberations",
        headers=seeded.auth(),
        files={
            "meta": (None, httpx.Request("GET", "/", json=meta).content.decode()),
            "lines": ("pv.csv", csv_text.encode(), "text/csv"),
        },
    )
    assert response.status_code == 422
    assert [(e["line"], e["field"]) for e in response.json()["errors"]] == [(3, "grade"), (4, "")]


async def test_bad_csv_header_is_refused(client: httpx.AsyncClient, seeded: Registry) -> None:
    meta = pv([])
    del meta["lines"]
    response = await client.post(
        "/v1/deliberations",
        headers=seeded.auth(),
        files={
            "meta": (None, httpx.Request("GET", "/", json=meta).content.decode()),
            "lines": ("pv.csv", b"numero;bloc;note\nC1;RNCP40705BC01;12\n", "text/csv"),
        },
    )
    assert response.status_code == 422
    assert "En-tête CSV invalide" in response.json()["detail"]


async def test_same_session_and_bloc_twice_must_be_a_correction(
    client: httpx.AsyncClient, seeded: Registry
) -> None:
    first = await client.post("/v1/deliberations", json=pv([line()]), headers=seeded.auth())
    assert first.status_code == 201
    before = seeded.notification_count()
    second = await client.post(
        "/v1/deliberations", json=pv([line(grade="15")]), headers=seeded.auth()
    )
    assert second.status_code == 422
    assert "corrections" in second.json()["errors"][0]["reason"]
    assert seeded.notification_count() == before


async def test_bad_vae_decisions_and_corrections(
    client: httpx.AsyncClient, seeded: Registry
) -> None:
    before = seeded.notification_count()
    vae = {
        "candidate_number": "C1",
        "certification": "RNCP40705",
        "decided_on": "2026-05-20",
        "jury": JURY,
        "decision": "partielle",
        "blocs": ["RNCP40705BC01"],
    }
    not_vae = await client.post("/v1/vae-decisions", json=vae, headers=seeded.auth())
    assert not_vae.status_code == 422 and "VAE" in not_vae.json()["detail"]
    await client.post(
        "/v1/candidates", json=candidate("V1", access_route="vae"), headers=seeded.auth()
    )
    before = seeded.notification_count()
    for body, status in [
        ({**vae, "candidate_number": "V1", "blocs": []}, 422),
        ({**vae, "candidate_number": "V1", "blocs": ["RNCP40705BC77"]}, 422),
        ({**vae, "candidate_number": "V1", "decision": "refus"}, 422),
        ({**vae, "candidate_number": "V1", "decided_on": "2030-01-10"}, 422),
        ({**vae, "candidate_number": "B1"}, 404),
    ]:
        response = await client.post("/v1/vae-decisions", json=body, headers=seeded.auth())
        assert response.status_code == status, (body, response.text)
    created = await client.post(
        "/v1/deliberations", json=pv(full_lines("C1")), headers=seeded.auth()
    )
    did = created.json()["deliberation_id"]
    before = seeded.notification_count()
    correction = {
        "deliberation_id": did,
        "candidate_number": "C1",
        "bloc": "RNCP40705BC01",
        "grade": "12",
        "reason": "Erreur de saisie",
    }
    for body, status in [
        (correction, 409),  # same grade: nothing to correct
        ({**correction, "grade": "25"}, 422),
        ({**correction, "deliberation_id": "not-an-id"}, 404),
        ({**correction, "candidate_number": "B1"}, 404),
    ]:
        response = await client.post("/v1/corrections", json=body, headers=seeded.auth())
        assert response.status_code == status, (body, response.text)
    other_center = await client.post(
        "/v1/corrections", json={**correction, "grade": "8"}, headers=seeded.auth(CENTER_B)
    )
    assert other_center.status_code == 404
    assert seeded.notification_count() == before


async def test_preferred_language_other_than_fr_or_en_is_refused(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    for bad in ("de", "EN", "", 1, None):
        r = await client.post(
            "/v1/candidates",
            json=candidate("P1", preferred_language=bad),
            headers=registry.auth(),
        )
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        (error,) = r.json()["errors"]
        assert error["field"] == "preferred_language"
        assert "« fr »" in error["reason"] and "« en »" in error["reason"]
    # Nothing was recorded: the number is free.
    assert (await client.get("/v1/candidates/P1", headers=registry.auth())).status_code == 404
    ok = await client.post(
        "/v1/candidates", json=candidate("P1", preferred_language="en"), headers=registry.auth()
    )
    assert ok.status_code == 201, ok.text
