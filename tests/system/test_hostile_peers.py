"""Nothing a peer sends can stop, stall or subvert the pipeline (the three services as
processes, on a nats-server with the services' authorization).

Only the registry's NKey may publish on ``certibloc.registry.>``: we use it, as a
compromised or buggy registry would, to publish a message that is not a CloudEvent and a
``decision-recorded`` that claims another source. Both consumers of that stream dead-letter both
(the forged one issues no attestation), the operator command lists them, and the next PV
still gives its attestations and its e-mails, whose text names the certification by its title
from the referential.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from contracts.referential import load_certification
from contracts.subjects import subject_for
from services.runtime import deadletters
from tests.registry.harness import candidate, pv
from tests.runtime.test_metrics import metrics_url, sample
from tests.support.mailbox import mails, text_of
from tests.support.processes import eventually
from tests.support.system import System

CENTER = "0750001A"  # the demo center tests.support.processes.registry_process creates


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    with System(tmp_path / "system") as running:
        yield running


DECISION = "fr.certibloc.registry.decision-recorded.v1"


def _forged_decision(number: str) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": "forged-1",
            "source": "/certibloc/attacker",
            "type": DECISION,
            "time": "2026-07-03T10:00:00+00:00",
            "datacontenttype": "application/json",
            "position": 999_999_000,
            "previous": 0,
            "data": {
                "decision_id": "forged-decision",
                "decision": "vae",
                "candidate_number": number,
                "exam_center": CENTER,
                "certification": "RNCP40705",
                "access_route": "formation_continue",
                "route": "vae",
                "decided_on": "2026-07-03",
                "vae_decision": "partielle",
                "validated": [
                    {
                        "validation_id": "forged-validation",
                        "bloc": "RNCP40705BC05",
                        "optional": False,
                        "via": "vae",
                        "validated_on": "2026-07-03",
                        "source_id": "forged-decision",
                    }
                ],
            },
        }
    )


async def test_garbage_and_forged_messages_are_dead_lettered_and_the_next_pv_flows(
    system: System,
) -> None:
    registry, att = system.url("registry"), system.url("attestations")
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{registry}/v1/candidates", json=candidate("H1"), headers=system.auth)
        assert r.status_code == 201, r.text

        as_registry = await system.nats.connect("registry")
        try:
            js = as_registry.jetstream()
            subject = subject_for(DECISION)
            await js.publish(subject, b"\xff{not a cloudevent")
            await js.publish(subject, _forged_decision("H1"))
        finally:
            await as_registry.close()

        lines = [
            {"candidate_number": "H1", "bloc": "RNCP40705BC01", "grade": "12"},
            {"candidate_number": "H1", "bloc": "RNCP40705BC02", "grade": "14,5"},
        ]
        posted = await http.post(
            f"{registry}/v1/deliberations", json=pv(lines), headers=system.auth
        )
        assert posted.status_code == 201, posted.text

        async def attested() -> list[dict[str, Any]] | None:
            r = await http.get(
                f"{att}/v1/attestations", params={"candidate_number": "H1"}, headers=system.auth
            )
            items: list[dict[str, Any]] = r.json()["attestations"] if r.is_success else []
            return items if len(items) >= 2 else None

        issued = await eventually(attested, 30, "the PV's attestations")
        assert sorted(a["code"] for a in issued) == ["RNCP40705BC01", "RNCP40705BC02"]
        await eventually(lambda: len(mails(system.mail_dir)) >= 1, 30, "the PV's e-mail")

        # Both consumers of the registry's stream refused both, each in its own stream.
        observer = await system.nats.connect()
        try:
            for service, consumer in (
                ("attestations", "attestations"),
                ("notifications", "notifications-registry"),
            ):

                async def letters(service: str = service) -> list[deadletters.StoredDeadLetter]:
                    found = await deadletters.list_letters(observer.jetstream(), service)
                    return found if len(found) >= 2 else []

                found = await eventually(letters, 20, f"{service}'s dead letters")
                assert sorted(d.summary()["reason_code"] for d in found) == [
                    "foreign_source",
                    "malformed",
                ]
                assert {d.consumer for d in found} == {consumer}
        finally:
            await observer.close()
        metrics = (await http.get(metrics_url(att))).text
        for reason in ("malformed", "foreign_source"):
            assert sample(metrics, "certibloc_consumer_dead_letters_total", reason=reason) == 1
        assert (await http.get(f"{att}/readyz")).status_code == 200

        # The operator lists them with the service's own credentials.
        listing = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.attestations", "dead-letters", "list"],
            env={**os.environ, **system.services["attestations"].env},
            capture_output=True,
            check=True,
            timeout=60,
        )
        listed = [orjson.loads(line) for line in listing.stdout.splitlines()]
        assert sorted(item["reason_code"] for item in listed) == ["foreign_source", "malformed"]

    # The e-mail names the certification by its title (it used to print its code).
    title = load_certification("RNCP40705").title
    (mail,) = mails(system.mail_dir)
    text = " ".join(text_of(mail).split())
    assert f"de la certification « {title} »" in text
    assert "« RNCP40705 »" not in text
