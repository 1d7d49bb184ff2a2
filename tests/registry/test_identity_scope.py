"""Candidate identity is scoped by the center that registers it: candidate numbers are
assigned by each academy's exam office, not nationally, so two centers may use one number for
two people. One center can neither block nor probe another's candidates; the same person
across centers is linked by INE, where given and consistent, without any center learning it."""

from __future__ import annotations

import inspect
import json
from typing import Any

import httpx
from nats.aio.client import Client

from services.registry.domain import ids
from services.registry.domain.candidate import Candidate
from tests.registry.harness import CENTER_A, CENTER_B, Registry, candidate, pv, stream_events


def _line(number: str, bloc: str = "RNCP40705BC01", grade: str = "12") -> dict[str, str]:
    return {"candidate_number": number, "bloc": bloc, "grade": grade}


def _shape(response: httpx.Response) -> tuple[int, Any]:
    """What a center can observe of an answer, the number it asked about aside."""
    text = response.text.replace("C0001", "N").replace("C9999", "N")
    body = json.loads(text)
    if isinstance(body, dict):
        body.pop("instance", None)
    return response.status_code, body


async def test_two_centers_may_register_the_same_number_for_two_people(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    lea = candidate("C0001", birth_name="Durand", given_names=["Léa"])
    tom = candidate("C0001", birth_name="Martin", given_names=["Tom"], email="tom@example.org")
    a = await client.post("/v1/candidates", json=lea, headers=registry.auth(CENTER_A))
    b = await client.post("/v1/candidates", json=tom, headers=registry.auth(CENTER_B))
    assert (a.status_code, b.status_code) == (201, 201)
    seen_a = (await client.get("/v1/candidates/C0001", headers=registry.auth(CENTER_A))).json()
    seen_b = (await client.get("/v1/candidates/C0001", headers=registry.auth(CENTER_B))).json()
    assert (seen_a["birth_name"], seen_a["exam_center"]) == ("Durand", CENTER_A)
    assert (seen_b["birth_name"], seen_b["exam_center"]) == ("Martin", CENTER_B)

    # Each center's PV grades its own candidate only.
    posted = await client.post(
        "/v1/deliberations", json=pv([_line("C0001")]), headers=registry.auth(CENTER_B)
    )
    assert posted.status_code == 201
    after_a = (await client.get("/v1/candidates/C0001", headers=registry.auth(CENTER_A))).json()
    after_b = (await client.get("/v1/candidates/C0001", headers=registry.auth(CENTER_B))).json()
    assert after_a["grades"] == [] and [g["bloc"] for g in after_b["grades"]] == ["RNCP40705BC01"]
    events = await stream_events(nc.jetstream(), 3)
    registered = [e["data"] for e in events if e["type"].endswith("candidate-registered.v1")]
    assert {(d["exam_center"], d["birth_name"]) for d in registered} == {
        (CENTER_A, "Durand"),
        (CENTER_B, "Martin"),
    }
    decided = [e["data"] for e in events if e["type"].endswith("decision-recorded.v1")]
    assert [(d["exam_center"], d["candidate_number"]) for d in decided] == [(CENTER_B, "C0001")]


async def test_another_centers_candidate_answers_exactly_like_an_unknown_one(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await client.post("/v1/candidates", json=candidate("C0001"), headers=registry.auth(CENTER_A))
    b = registry.auth(CENTER_B)
    for method, path, body in [
        ("GET", "/v1/candidates/{n}", None),
        ("POST", "/v1/deliberations", pv([_line("{n}")])),
        (
            "POST",
            "/v1/corrections",
            {
                "deliberation_id": "00000000-0000-0000-0000-000000000000",
                "candidate_number": "{n}",
                "bloc": "RNCP40705BC01",
                "grade": "8",
                "reason": "Erreur de saisie",
            },
        ),
    ]:
        answers = []
        for number in ("C0001", "C9999"):  # A's candidate, and a number nobody registered
            url = path.replace("{n}", number)
            content = (
                None
                if body is None
                else httpx.Request("POST", "/", json=body).content.decode().replace("{n}", number)
            )
            response = await client.request(
                method, url, content=content, headers={**b, "content-type": "application/json"}
            )
            answers.append(_shape(response))
        assert answers[0] == answers[1], (path, answers)
        assert answers[0][0] in (404, 422)
    # Registering A's number at B is not a conflict: it is B's own (new) candidate.
    mine = await client.post("/v1/candidates", json=candidate("C0001"), headers=b)
    fresh = await client.post("/v1/candidates", json=candidate("C9999"), headers=b)
    assert mine.status_code == fresh.status_code == 201


async def test_the_same_center_registering_another_identity_under_a_number_is_a_conflict(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await client.post("/v1/candidates", json=candidate("C0001"), headers=registry.auth())
    other = candidate("C0001", birth_name="Autre")
    response = await client.post("/v1/candidates", json=other, headers=registry.auth())
    assert response.status_code == 409
    assert "par ce centre" in response.json()["detail"]


async def test_the_same_person_is_linked_across_centers_by_ine_when_consistent(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    ine = "1234567890A"
    lea_a = candidate("C0001", ine=ine)
    lea_b = candidate("X0042", ine=ine)  # the same birth date: the same person, moved
    squatter = candidate("Z0001", ine=ine, birth_date="2001-01-01", birth_name="Autre")
    without = candidate("Z0002", birth_date="2001-01-01", birth_name="Autre")
    a = await client.post("/v1/candidates", json=lea_a, headers=registry.auth(CENTER_A))
    b = await client.post("/v1/candidates", json=lea_b, headers=registry.auth(CENTER_B))
    s = await client.post("/v1/candidates", json=squatter, headers=registry.auth(CENTER_B))
    w = await client.post("/v1/candidates", json=without, headers=registry.auth(CENTER_B))
    assert (a.status_code, b.status_code, s.status_code, w.status_code) == (201,) * 4
    # Nothing in an answer says whether the INE was known elsewhere.
    assert set(s.json()) == set(w.json())
    person = registry.app.person(ine)
    assert person is not None
    assert [(r["exam_center"], r["candidate_number"]) for r in person.records] == [
        (CENTER_A, "C0001"),
        (CENTER_B, "X0042"),
    ]
    assert [(r["exam_center"], r["candidate_number"]) for r in person.conflicts] == [
        (CENTER_B, "Z0001")
    ]


async def test_a_candidate_stored_before_scoping_is_still_found_by_its_own_center(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    """Stores written before 2026-12 key candidates by number alone: no migration rewrites
    them (events are immutable); lookups try the scoped id, then the old one, and the old one
    counts only for the center that registered it."""
    identity = candidate("L0001")
    identity.pop("candidate_number")
    given = {**identity, "usage_name": None, "ine": None}
    # Fields added to the registration since (optional, with defaults) are absent from an
    # event stored then: the event is built with them, then stripped of them before saving.
    added = {
        name: p.default
        for name, p in inspect.signature(Candidate.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    old = Candidate._create(
        Candidate.Registered,
        id=ids.legacy_candidate_id("L0001"),
        candidate_number="L0001",
        exam_center=CENTER_A,
        **{**added, **given},
    )
    for event in old.pending_events:
        for name in added:
            event.__dict__.pop(name, None)
    registry.app.save(old)
    mine = await client.get("/v1/candidates/L0001", headers=registry.auth(CENTER_A))
    assert mine.status_code == 200 and mine.json()["exam_center"] == CENTER_A
    again = await client.post(
        "/v1/candidates", json=candidate("L0001"), headers=registry.auth(CENTER_A)
    )
    assert again.status_code == 200  # the same candidate: nothing new
    graded = await client.post(
        "/v1/deliberations", json=pv([_line("L0001")]), headers=registry.auth(CENTER_A)
    )
    assert graded.status_code == 201
    theirs = await client.get("/v1/candidates/L0001", headers=registry.auth(CENTER_B))
    assert theirs.status_code == 404
    new = await client.post(
        "/v1/candidates", json=candidate("L0001"), headers=registry.auth(CENTER_B)
    )
    assert new.status_code == 201


async def test_an_ine_claimed_over_and_over_does_not_grow_without_bound(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    """A center typing someone else's INE on many candidates would otherwise make every
    later registration with it slower, theirs and the person's."""
    from services.registry.domain.person import MAX_CONFLICTS

    ine = "9876543210Z"
    await client.post("/v1/candidates", json=candidate("P0001", ine=ine), headers=registry.auth())
    b = registry.auth(CENTER_B)
    for k in range(MAX_CONFLICTS + 5):
        body = candidate(f"Q{k:04d}", ine=ine, birth_date="2001-01-01", birth_name="Autre")
        assert (await client.post("/v1/candidates", json=body, headers=b)).status_code == 201
    person = registry.app.person(ine)
    assert person is not None and len(person.conflicts) == MAX_CONFLICTS
    assert person.version == 2 + MAX_CONFLICTS  # identified, linked, conflicts: no more
