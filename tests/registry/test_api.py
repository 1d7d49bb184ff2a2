"""The registry's public API over real HTTP, with its events checked on the real NATS stream."""

from __future__ import annotations

import httpx
from nats.aio.client import Client

from tests.registry.harness import (
    CENTER_B,
    JURY,
    Registry,
    candidate,
    full_lines,
    pv,
    stream_events,
)


async def test_certification_referential_is_public(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/certifications/RNCP40705")
    assert response.status_code == 200
    body = response.json()
    blocs = body["blocs"]
    assert len([b for b in blocs if not b["optional"]]) == 12
    assert len([b for b in blocs if b["optional"]]) == 3
    bc01 = blocs[0]
    assert bc01["code"] == "RNCP40705BC01" and bc01["unit"] == "U31"
    assert "Identifier les caractéristiques de la demande" in bc01["competences"]
    assert bc01["modalities"] == {"1": "ccf", "2": "ponctuel_oral_pratique", "3": "ccf"}
    assert body["valid_from"] == "2025-09-01" and body["valid_until"] == "2028-08-31"
    unknown = await client.get("/v1/certifications/RNCP99999")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


async def test_candidate_registration_is_idempotent_and_scoped_to_its_center(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    body = candidate("C100", usage_name="Martin", ine="1234567890A")
    first = await client.post("/v1/candidates", json=body, headers=registry.auth())
    assert first.status_code == 201
    again = await client.post("/v1/candidates", json=body, headers=registry.auth())
    assert again.status_code == 200
    conflict = await client.post(
        "/v1/candidates", json={**body, "birth_name": "Autre"}, headers=registry.auth()
    )
    assert conflict.status_code == 409
    mine = await client.get("/v1/candidates/C100", headers=registry.auth())
    assert mine.status_code == 200 and mine.json()["usage_name"] == "Martin"
    theirs = await client.get("/v1/candidates/C100", headers=registry.auth(CENTER_B))
    assert theirs.status_code == 404


async def test_a_json_pv_becomes_events_on_the_stream(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    await client.post("/v1/candidates", json=candidate("C200"), headers=registry.auth())
    await client.post(
        "/v1/candidates",
        json=candidate("C201", access_route="apprentissage"),
        headers=registry.auth(),
    )
    lines = [
        *full_lines("C200", "12"),
        {"candidate_number": "C201", "bloc": "RNCP40705BC01", "grade": 9.5},
        {
            "candidate_number": "C201",
            "bloc": "RNCP40705BC02",
            "grade": "10",
            "modality": "ponctuel_ecrit",
        },
        {"candidate_number": "C201", "bloc": "RNCP40705BC03", "grade": "ABS"},
    ]
    response = await client.post("/v1/deliberations", json=pv(lines), headers=registry.auth())
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["lines"] == 15 and receipt["validated"] == 13

    # 2 registrations, then one decision per candidate: the unit on the wire
    events = await stream_events(nc.jetstream(), 4)
    types = [e["type"].split(".")[3] for e in events]
    assert types == ["candidate-registered"] * 2 + ["decision-recorded"] * 2
    decisions = {e["data"]["candidate_number"]: e["data"] for e in events[2:]}
    c200, c201 = decisions["C200"], decisions["C201"]
    assert c200["decision"] == "deliberation" and c200["route"] == "exam"
    assert c200["decided_on"] == "2026-07-03" and c200["session"] == "2026-06"
    assert c200["decision_id"] == receipt["deliberation_id"]
    assert len(c200["graded"]) == 12 and len(c200["validated"]) == 12
    assert c200["award"]["average"] == "12" and c200["award"]["mention"] == "assez_bien"
    assert {g["grade"] for g in c201["graded"]} == {"9.5", "10", None}
    assert [v["bloc"] for v in c201["validated"]] == ["RNCP40705BC02"]
    assert c201["award"] is None and not c201["withdrawn"]
    assert len({e["position"] for e in events}) == len(events)

    record = (await client.get("/v1/candidates/C200", headers=registry.auth())).json()
    assert len(record["acquired_blocs"]) == 12
    assert record["diploma"]["mention"] == "assez_bien"
    assert [h["event"] for h in record["history"]] == ["Registered", "ResultsRecorded"]


async def test_a_csv_pv_with_bom_semicolons_and_decimal_commas(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    await client.post("/v1/candidates", json=candidate("C300"), headers=registry.auth())
    csv_text = (
        "\ufeffcandidate_number;bloc;grade;modality\r\n"
        "C300;RNCP40705BC01;12,5;ccf\r\n"
        "C300;RNCP40705BC02;9,75;\r\n"
        "C300;RNCP40705BC04;ABS;\r\n"
    )
    meta = pv([])
    del meta["lines"]
    response = await client.post(
        "/v1/deliberations",
        headers=registry.auth(),
        files={
            "meta": (
                None,
                httpx.Request("GET", "/", json=meta).content.decode(),
                "application/json",
            ),
            "lines": ("pv.csv", csv_text.encode(), "text/csv"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["validated"] == 1
    events = await stream_events(nc.jetstream(), 1 + 1)
    grades = [g["grade"] for g in events[-1]["data"]["graded"]]
    assert grades == ["12.5", "9.75", None]


async def test_a_csv_pv_with_commas_and_quoted_decimal_commas(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await client.post("/v1/candidates", json=candidate("C310"), headers=registry.auth())
    csv_text = 'candidate_number,bloc,grade\nC310,RNCP40705BC01,"14,25"\nC310,RNCP40705BC02,8\n'
    meta = pv([])
    del meta["lines"]
    response = await client.post(
        "/v1/deliberations",
        headers=registry.auth(),
        files={
            "meta": (None, httpx.Request("GET", "/", json=meta).content.decode()),
            "lines": ("pv.csv", csv_text.encode("cp1252"), "text/csv"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json() == {**response.json(), "lines": 2, "validated": 1}


async def test_idempotency_key_replays_and_refuses_another_body(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await client.post("/v1/candidates", json=candidate("C400"), headers=registry.auth())
    body = pv(full_lines("C400", "11"))
    headers = {**registry.auth(), "Idempotency-Key": "pv-2026-06-lot-1"}
    first = await client.post("/v1/deliberations", json=body, headers=headers)
    assert first.status_code == 201
    before = registry.notification_count()
    again = await client.post("/v1/deliberations", json=body, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    other = await client.post(
        "/v1/deliberations", json=pv(full_lines("C400", "13")), headers=headers
    )
    assert other.status_code == 409
    assert registry.notification_count() == before


async def test_correction_taking_a_bloc_away_withdraws_it_and_the_diploma(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    await client.post("/v1/candidates", json=candidate("C500"), headers=registry.auth())
    lines = full_lines("C500", "10")
    created = await client.post("/v1/deliberations", json=pv(lines), headers=registry.auth())
    deliberation_id = created.json()["deliberation_id"]
    correction = await client.post(
        "/v1/corrections",
        headers=registry.auth(),
        json={
            "deliberation_id": deliberation_id,
            "candidate_number": "C500",
            "bloc": "RNCP40705BC01",
            "grade": "8,5",
            "reason": "Erreur de report de la note de l'épreuve E31",
        },
    )
    assert correction.status_code == 201, correction.text
    assert "RNCP40705BC01" not in correction.json()["acquired"]
    events = await stream_events(nc.jetstream(), 1 + 1 + 1)
    pv_decision, corrected = events[-2]["data"], events[-1]["data"]
    assert (
        corrected["decision"] == "correction"
        and corrected["decision_id"] == (correction.json()["correction_id"])
    )
    assert corrected["corrects"] == deliberation_id
    assert corrected["decided_on"] == "2026-07-03"  # the jury's date, not the correction's
    assert corrected["reason"].startswith("Erreur de report")
    (regraded,) = corrected["graded"]
    assert regraded["grade"] == "8.5" and regraded["corrects"] == regraded["result_id"]
    (withdrawn,) = corrected["withdrawn"]
    original = next(v for v in pv_decision["validated"] if v["bloc"] == "RNCP40705BC01")
    assert withdrawn["bloc"] == "RNCP40705BC01"
    assert withdrawn["validation_id"] == original["validation_id"]
    assert corrected["award_withdrawn"] == pv_decision["award"]["award_id"]


async def test_vae_partial_decision_validates_exactly_the_named_blocs(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    await client.post(
        "/v1/candidates",
        json=candidate("V100", access_route="vae", candidate_group=2),
        headers=registry.auth(),
    )
    named = ["RNCP40705BC01", "RNCP40705BC03"]
    response = await client.post(
        "/v1/vae-decisions",
        headers=registry.auth(),
        json={
            "candidate_number": "V100",
            "certification": "RNCP40705",
            "decided_on": "2026-05-20",
            "jury": JURY,
            "decision": "partielle",
            "blocs": named,
        },
    )
    assert response.status_code == 201, response.text
    events = await stream_events(nc.jetstream(), 1 + 1)
    decision = events[-1]["data"]
    assert decision["decision"] == "vae" and decision["route"] == "vae"
    assert decision["vae_decision"] == "partielle" and decision["decided_on"] == "2026-05-20"
    assert sorted(v["bloc"] for v in decision["validated"]) == named
    assert {v["via"] for v in decision["validated"]} == {"vae"}


async def test_vae_total_decision_awards_the_certification(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    await client.post(
        "/v1/candidates", json=candidate("V200", access_route="vae"), headers=registry.auth()
    )
    response = await client.post(
        "/v1/vae-decisions",
        headers=registry.auth(),
        json={
            "candidate_number": "V200",
            "certification": "RNCP40705",
            "decided_on": "2026-05-20",
            "jury": JURY,
            "decision": "totale",
        },
    )
    assert response.status_code == 201
    events = await stream_events(nc.jetstream(), 1 + 1)
    decision = events[-1]["data"]
    assert decision["vae_decision"] == "totale" and len(decision["validated"]) == 12
    assert decision["award"]["via"] == "vae" and decision["award"]["average"] is None


async def test_service_probes_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/deliberations", "/v1/candidates", "/v1/vae-decisions", "/v1/corrections"} <= set(
        spec["paths"]
    )
    assert (
        "multipart/form-data"
        in spec["paths"]["/v1/deliberations"]["post"]["requestBody"]["content"]
    )
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
