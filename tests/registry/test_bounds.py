"""Bounds at the edge: every string a center sends has a maximum length and every list a
maximum count, names are NFC-normalised and refused when they hold invisible or direction
characters, and no accepted request can store an event the bus would refuse. Each refusal is
a clear 422 (or 413), records nothing, and the next good request flows."""

from __future__ import annotations

import unicodedata
from typing import Any

import httpx
import orjson
import pytest
from nats.aio.client import Client

from contracts.text import NAME_MAX, REASON_MAX
from services.registry.domain.pv import PV_LINES_MAX
from services.runtime.outbox import EventTooLarge, OutboxGuard, encode
from tests.registry.harness import JURY, Registry, candidate, pv, stream_events
from tests.runtime.sample import Counter, SampleTranslator


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def _reasons(problem: dict[str, Any]) -> str:
    return (
        problem["detail"]
        + " "
        + " ".join(f"{e.get('field')}: {e.get('reason')}" for e in problem.get("errors", []))
    )


async def test_a_megabyte_name_is_refused_and_the_next_pv_flows(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    """The report that opened this: a 1.1 MB given name was accepted, and its event stopped
    the registry's relay for every center."""
    before = registry.notification_count()
    huge = candidate("C1", given_names=["L" * 1_100_000])
    problem = _problem(await client.post("/v1/candidates", json=huge, headers=registry.auth()), 422)
    assert "given_names.0" in _reasons(problem) and f"{NAME_MAX} caractère" in _reasons(problem)
    assert registry.notification_count() == before

    ok = await client.post("/v1/candidates", json=candidate("C1"), headers=registry.auth())
    assert ok.status_code == 201
    lines = [{"candidate_number": "C1", "bloc": "RNCP40705BC01", "grade": "12"}]
    assert (
        await client.post("/v1/deliberations", json=pv(lines), headers=registry.auth())
    ).status_code == 201
    events = await stream_events(nc.jetstream(), 1 + 1)  # registered, its decision
    assert [e["type"].split(".")[3] for e in events] == [
        "candidate-registered",
        "decision-recorded",
    ]


NAMES_REFUSED = {
    "right-to-left override": "Dur\u202eand",
    "left-to-right isolate": "Dur\u2066and",
    "zero-width space": "Du\u200brand",
    "zero-width joiner": "Du\u200drand",
    "byte order mark": "\ufeffDurand",
    "control character": "Dur\x07and",
    "no letter at all": "---",
    "stacked diacritics": "Dura" + "\u0301" * 8 + "nd",
    "private use": "Dur\ue000and",
    "combining grapheme joiner": "Du\u034frand",
    "variation selector": "Du\ufe0frand",
    "Hangul filler": "Du\u3164rand",
    "Khmer inherent vowel": "Du\u17b4rand",
    "a digit inside": "Dur4nd",
}


@pytest.mark.parametrize("case", list(NAMES_REFUSED))
async def test_names_with_invisible_or_direction_characters_are_refused(
    case: str, client: httpx.AsyncClient, registry: Registry
) -> None:
    name = NAMES_REFUSED[case]
    before = registry.notification_count()
    for field in ("birth_name", "usage_name", "given_names"):
        body = candidate("C9", **{field: [name] if field == "given_names" else name})
        response = await client.post("/v1/candidates", json=body, headers=registry.auth())
        problem = _problem(response, 422)
        assert field in _reasons(problem), (case, field, problem)
    assert registry.notification_count() == before


async def test_names_are_nfc_normalised_and_their_spaces_collapsed(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    decomposed = unicodedata.normalize("NFD", "Léa-Hélène")
    assert decomposed != "Léa-Hélène"
    body = candidate("C2", given_names=[f"  {decomposed} "], birth_name="Le \t\n Goff")
    response = await client.post("/v1/candidates", json=body, headers=registry.auth())
    assert response.status_code == 201, response.text
    assert response.json()["given_names"] == ["Léa-Hélène"]
    assert response.json()["birth_name"] == "Le Goff"
    (event,) = await stream_events(nc.jetstream(), 1)
    assert event["data"]["given_names"] == ["Léa-Hélène"]
    # Sent again in the other normal form, it is the same candidate: nothing new.
    again = await client.post(
        "/v1/candidates", json={**body, "given_names": ["Léa-Hélène"]}, headers=registry.auth()
    )
    assert again.status_code == 200


def _jury(n: int, name: str = "Mme Leroy") -> dict[str, Any]:
    roles = ["teacher_public", "teacher_private", "employer", "employee"]
    return {"members": [{"name": name, "role": roles[i % 4]} for i in range(n)]}


BODIES: dict[str, tuple[str, dict[str, Any], str]] = {
    "seven given names": (
        "/v1/candidates",
        candidate("C3", given_names=["Anne"] * 7),
        "given_names",
    ),
    "a 101-character birth name": (
        "/v1/candidates",
        candidate("C3", birth_name="A" * 101),
        "birth_name",
    ),
    "an e-mail of 255 characters": (
        "/v1/candidates",
        candidate("C3", email="a" * 64 + "@" + "b" * 187 + ".fr"),
        "email",
    ),
    "an e-mail local part of 65": (
        "/v1/candidates",
        candidate("C3", email="a" * 65 + "@example.org"),
        "email",
    ),
    "an e-mail with a bidi override": (
        "/v1/candidates",
        candidate("C3", email="lea\u202e@example.org"),
        "email",
    ),
    "a 33-character candidate number": ("/v1/candidates", candidate("C" * 33), "candidate_number"),
    "a jury of 31": ("/v1/deliberations", pv([], jury=_jury(31)), "jury.members"),
    "a jury member named with a zero-width space": (
        "/v1/deliberations",
        pv([], jury=_jury(4, "Mme\u200bLeroy")),
        "jury.members.0.name",
    ),
    "too many PV lines": (
        "/v1/deliberations",
        pv(
            [{"candidate_number": "C1", "bloc": "RNCP40705BC01", "grade": "12"}]
            * (PV_LINES_MAX + 1)
        ),
        "lines",
    ),
    "a VAE decision naming 31 blocs": (
        "/v1/vae-decisions",
        {
            "candidate_number": "V1",
            "certification": "RNCP40705",
            "decided_on": "2026-05-20",
            "jury": JURY,
            "decision": "partielle",
            "blocs": ["RNCP40705BC01"] * 31,
        },
        "blocs",
    ),
    "a correction reason of 501 characters": (
        "/v1/corrections",
        {
            "deliberation_id": "d",
            "candidate_number": "C1",
            "bloc": "RNCP40705BC01",
            "grade": "8",
            "reason": "x" * (REASON_MAX + 1),
        },
        "reason",
    ),
    "a correction reason with an RLO": (
        "/v1/corrections",
        {
            "deliberation_id": "d",
            "candidate_number": "C1",
            "bloc": "RNCP40705BC01",
            "grade": "8",
            "reason": "Erreur \u202ede saisie",
        },
        "reason",
    ),
}


@pytest.mark.parametrize("case", list(BODIES))
async def test_every_field_and_list_is_bounded(
    case: str, client: httpx.AsyncClient, registry: Registry
) -> None:
    route, body, field = BODIES[case]
    before = registry.notification_count()
    response = await client.post(
        route,
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **registry.auth()},
    )
    problem = _problem(response, 422)
    assert field in _reasons(problem), problem
    assert registry.notification_count() == before


async def test_pv_line_fields_are_bounded_and_never_echoed_whole(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await client.post("/v1/candidates", json=candidate("C1"), headers=registry.auth())
    before = registry.notification_count()
    lines = [
        {"candidate_number": "C1", "bloc": "B" * 100_000, "grade": "12"},
        {
            "candidate_number": "C1",
            "bloc": "RNCP40705BC02",
            "grade": "DISP",
            "justification": "j" * (REASON_MAX + 1),
        },
        {
            "candidate_number": "C1",
            "bloc": "RNCP40705BC03",
            "grade": "DISP",
            "justification": "diplôme\u2067 caché",
        },
    ]
    response = await client.post("/v1/deliberations", json=pv(lines), headers=registry.auth())
    problem = _problem(response, 422)
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [
        (1, "bloc"),
        (2, "justification"),
        (3, "justification"),
    ]
    assert len(response.content) < 2000, "a client's value must not be echoed whole"
    assert registry.notification_count() == before


async def test_a_csv_pv_with_too_many_lines_is_refused(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    meta = pv([])
    del meta["lines"]
    rows = "".join(f"C{i};RNCP40705BC01;12\n" for i in range(PV_LINES_MAX + 1))
    response = await client.post(
        "/v1/deliberations",
        headers=registry.auth(),
        files={
            "meta": (None, orjson.dumps(meta).decode()),
            "lines": ("pv.csv", ("candidate_number;bloc;grade\n" + rows).encode(), "text/csv"),
        },
    )
    problem = _problem(response, 422)
    assert str(PV_LINES_MAX) in problem["detail"]


async def test_a_unit_of_work_too_large_for_the_bus_is_refused_before_it_is_stored(
    client: httpx.AsyncClient, registry: Registry, nc: Client
) -> None:
    """Within every field's bound, the bus is the last judge: with a bus (made) smaller than
    one candidate's event, the API answers 413 and records nothing; a smaller one passes."""
    runtime = registry.app.outbox_guard
    assert runtime is not None
    runtime.limit = 1500
    try:
        long_names = candidate(
            "C5", given_names=["Marie-" + "a" * 90] * 6, birth_name="B" * 100, usage_name="U" * 100
        )
        before = registry.notification_count()
        response = await client.post("/v1/candidates", json=long_names, headers=registry.auth())
        problem = _problem(response, 413)
        assert "1500 octets" in problem["detail"] and "rien n'a été enregistré" in problem["detail"]
        assert problem["limit_bytes"] == 1500
        assert registry.notification_count() == before
        ok = await client.post("/v1/candidates", json=candidate("C6"), headers=registry.auth())
        assert ok.status_code == 201
        (event,) = await stream_events(nc.jetstream(), 1)
        assert event["data"]["candidate_number"] == "C6"
    finally:
        runtime.limit = 1024 * 1024


def test_the_guard_counts_the_headers_and_the_widest_positions() -> None:
    """The server counts headers against max_payload as well as the payload, and a message
    not stored yet has no position: the guard measures it as if its ids were the widest."""
    counter = Counter(name="c")
    counter.increment(by=1)
    translator = SampleTranslator("tsample")
    (event,) = [e for e in counter.pending_events if translator(e)]
    (out,) = translator(event)
    real = encode(
        out,
        stream="S_tsample",
        source="/certibloc/tsample",
        notification_id=1,
        index=0,
        previous=0,
        timestamp=event.timestamp,
        traceparent=None,
        tracestate=None,
    )
    wire_headers = (
        len(b"NATS/1.0\r\n")
        + len(f"Nats-Msg-Id: {real.msg_id}\r\n")
        + len(b"Nats-Expected-Stream: S_tsample\r\n")
        + len(b"\r\n")
    )
    assert real.size == len(real.payload) + wire_headers
    guard = OutboxGuard(translator, "/certibloc/tsample", "S_tsample", limit=real.size)
    with pytest.raises(EventTooLarge):
        guard.check([event])  # fits today, would not once its position is 15 digits long
    guard.limit = real.size + 100
    guard.check([event])


async def test_correcting_a_line_recorded_before_the_bounds_still_works(
    client: httpx.AsyncClient, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old API took justifications of any length: an event carrying one must still be
    correctable (its events are translated with today's contract, which bounds what the bus
    carries, not what the store already holds)."""
    from services.registry.domain import pv as pv_module

    await client.post("/v1/candidates", json=candidate("C1"), headers=registry.auth())
    lines = [
        {"candidate_number": "C1", "bloc": "RNCP40705BC01", "grade": "12"},
        {
            "candidate_number": "C1",
            "bloc": "RNCP40705BC02",
            "grade": "DISP",
            "justification": "Motif détaillé. " * 200,  # 3,200 characters
        },
    ]
    guard = registry.app.outbox_guard
    monkeypatch.setattr(pv_module, "REASON_MAX", 100_000)  # the registry as it was
    registry.app.outbox_guard = None
    created = await client.post("/v1/deliberations", json=pv(lines), headers=registry.auth())
    assert created.status_code == 201, created.text
    monkeypatch.setattr(pv_module, "REASON_MAX", REASON_MAX)
    registry.app.outbox_guard = guard
    correction = {
        "deliberation_id": created.json()["deliberation_id"],
        "candidate_number": "C1",
        "bloc": "RNCP40705BC01",
        "grade": "8",
        "reason": "Erreur de saisie",
    }
    response = await client.post("/v1/corrections", json=correction, headers=registry.auth())
    assert response.status_code == 201, response.text
