"""The three services as separate processes on a real nats-server, with the dev SMTP sink as a
process too: a PV in, valid attestations at /v/{id}, one e-mail each with a working link,
signed webhooks; a correction revokes; a partial VAE decision attests exactly its blocs."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Awaitable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.notifications.sink import receptions
from tests.notifications.test_webhooks import Receiver
from tests.registry.harness import JURY, candidate, full_lines, pv
from tests.support.processes import ServedApp, eventually
from tests.support.system import System


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    with System(tmp_path / "system") as running:
        yield running


def mails(directory: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(directory.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def mails_about(directory: Path, what: str) -> list[EmailMessage]:
    return [m for m in mails(directory) if str(m["X-Certibloc-Delivery-Key"]).endswith(what)]


async def test_pv_to_attestations_mails_and_webhooks_then_correction_and_vae(
    system: System,
) -> None:
    registry, att, notes = (system.url(s) for s in ("registry", "attestations", "notifications"))
    auth = system.auth
    receiver = Receiver(secret="")
    with ServedApp(receiver.app()) as hooks:
        async with httpx.AsyncClient(timeout=30) as http:

            async def webhook_registered() -> httpx.Response | None:
                # The center's key reaches the notifications service through the registry's
                # events: until then the key is unknown there (401).
                r = await http.post(
                    f"{notes}/v1/webhooks", headers=auth, json={"url": f"{hooks.url}/hooks"}
                )
                return r if r.status_code == 201 else None

            registered = await eventually(webhook_registered)
            receiver.secret = registered.json()["secret"]

            for body in (
                candidate("E1", given_names=["Inès"], email="ines@example.org"),
                candidate("V1", access_route="vae", email="v1@example.org"),
            ):
                r = await http.post(f"{registry}/v1/candidates", json=body, headers=auth)
                assert r.status_code == 201, r.text
            created = await http.post(
                f"{registry}/v1/deliberations",
                json=pv(full_lines("E1", "12")),
                headers={**auth, "Idempotency-Key": "e2e-pv-1"},
            )
            assert created.status_code == 201, created.text

            async def attestations(number: str, count: int) -> list[dict[str, Any]] | None:
                r = await http.get(
                    f"{att}/v1/attestations", params={"candidate_number": number}, headers=auth
                )
                items: list[dict[str, Any]] = r.json()["attestations"] if r.is_success else []
                return items if len(items) >= count else None

            # Continuing education, all 12 blocs: 12 bloc attestations and the diploma's.
            issued = await eventually(lambda: attestations("E1", 13))
            assert len(issued) == 13
            bc01 = next(a for a in issued if a["code"] == "RNCP40705BC01")
            page = await http.get(bc01["verify_url"])
            assert page.status_code == 200 and "Attestation valide" in page.text
            assert "Inès Durand" in page.text
            assert bc01["verify_url"].startswith(att)

            # One e-mail per attestation, each with a personal link that downloads the PDF.
            await eventually(lambda: len(mails(system.mail_dir)) >= 13)
            sent = mails(system.mail_dir)
            assert len(sent) == 13 and len({m["Message-ID"] for m in sent}) == 13
            assert {m["To"].addresses[0].addr_spec for m in sent} == {"ines@example.org"}
            text = sent[0].get_body(preferencelist=("plain",))
            assert isinstance(text, EmailMessage)
            link = re.search(r"(http://\S+/pdf\?token=\S+)", text.get_content())
            assert link
            pdf = await http.get(link.group(1))
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

            # Signed webhooks, verified by an independent Standard Webhooks implementation.
            await eventually(lambda: len(receiver.verified) >= 13)
            assert not receiver.rejected
            assert {p["type"] for v in receiver.verified.values() for p, _ in v} == {
                "fr.certibloc.attestations.attestation-issued.v1"
            }

            # A correction takes BC01 away: its attestation and the diploma's are revoked,
            # and the candidate is told about each.
            correction = await http.post(
                f"{registry}/v1/corrections",
                headers=auth,
                json={
                    "deliberation_id": created.json()["deliberation_id"],
                    "candidate_number": "E1",
                    "bloc": "RNCP40705BC01",
                    "grade": "4",
                    "reason": "Erreur de report de note",
                },
            )
            assert correction.status_code == 201, correction.text

            async def status(url: str) -> str:
                r = await http.get(url, headers={"Accept": "application/json"})
                return str(r.json()["status"])

            await eventually(lambda: _is(status(bc01["verify_url"]), "revoked"))
            diploma = next(a for a in issued if a["kind"] == "certification")
            await eventually(lambda: _is(status(diploma["verify_url"]), "revoked"))
            assert "Attestation révoquée" in (await http.get(bc01["verify_url"])).text
            await eventually(lambda: len(mails_about(system.mail_dir, ":revoked")) == 2)
            # The average still passes without BC01: the diploma is awarded again, on the
            # corrected grades, under a new attestation.
            now = await eventually(lambda: attestations("E1", 14))
            assert len(now) == 14
            diplomas = [a for a in now if a["kind"] == "certification"]
            assert len(diplomas) == 2
            renewed = next(a for a in diplomas if a["id"] != diploma["id"])
            assert await status(renewed["verify_url"]) == "valid"
            await eventually(lambda: len(receiver.verified) >= 16)  # 14 issued + 2 revoked

            # A partial VAE decision: attestations for exactly the named blocs.
            named = ["RNCP40705BC04", "RNCP40705BC07"]
            decision = await http.post(
                f"{registry}/v1/vae-decisions",
                headers=auth,
                json={
                    "candidate_number": "V1",
                    "certification": "RNCP40705",
                    "decided_on": "2026-05-20",
                    "jury": JURY,
                    "decision": "partielle",
                    "blocs": named,
                },
            )
            assert decision.status_code == 201, decision.text
            vae = await eventually(lambda: attestations("V1", 2))
            assert sorted(a["code"] for a in vae) == named
            await eventually(lambda: len(mails(system.mail_dir)) >= 18)
            # One e-mail per attestation event: 14 + 2 issued, 2 revoked; nothing twice.
            final = mails(system.mail_dir)
            assert len(final) == 18 and len({m["Message-ID"] for m in final}) == 18
            await eventually(lambda: len(receiver.verified) >= 18)
            assert len(receiver.verified) == 18
            assert all(len(v) == 1 for v in receiver.verified.values())
            assert set(receptions(system.mail_dir).values()) == {1}  # none sent twice


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
