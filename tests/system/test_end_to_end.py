"""The three services as separate processes on a real nats-server, with the dev SMTP sink as a
process too: a PV in, valid attestations at /v/{id}, one e-mail per candidate's decision listing
them with working links (revoked by the center, new ones e-mailed), one signed webhook per
decision; a correction revokes and re-awards; a partial VAE decision attests exactly its
blocs."""

from __future__ import annotations

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
from tests.support.mailbox import attestation_ids, delivery_key, mails, text_of
from tests.support.processes import ServedApp, eventually
from tests.support.system import System


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    with System(tmp_path / "system") as running:
        yield running


def mails_about(directory: Path, what: str) -> list[EmailMessage]:
    return [m for m in mails(directory) if delivery_key(m).endswith(what)]


def hook_payloads(receiver: Receiver) -> list[dict[str, Any]]:
    return [p for v in receiver.verified.values() for p, _ in v]


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

            # One e-mail for the decision, listing the 13 attestations, each with a personal
            # link that downloads its PDF.
            await eventually(lambda: len(mails(system.mail_dir)) >= 1)
            sent = mails(system.mail_dir)
            assert len(sent) == 1
            assert sent[0]["To"].addresses[0].addr_spec == "ines@example.org"
            assert sorted(attestation_ids(sent[0])) == sorted(
                a["verify_url"].rsplit("/", 1)[1] for a in issued
            )
            links = re.findall(r"(http://\S+/pdf\?token=\S+)", text_of(sent[0]))
            assert len(links) == 13
            pdf = await http.get(links[0])
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
            # And one link to the candidate's personal space, listing all 13.
            (space,) = re.findall(r"(http://\S+/space\?token=\S+)", text_of(sent[0]))
            space_page = await http.get(space)
            assert space_page.status_code == 200 and "En vigueur (13)" in space_page.text

            # The center revokes the candidate's links and asks for new ones: the links sent
            # open nothing at once, and a new e-mail brings working ones.
            revoked_links = await http.post(
                f"{att}/v1/candidates/E1/download-links/revoke",
                json={"send_new_links": True},
                headers=auth,
            )
            assert revoked_links.status_code == 202, revoked_links.text
            assert (await http.get(links[0])).status_code == 403
            assert (await http.get(space)).status_code == 403
            await eventually(lambda: len(mails_about(system.mail_dir, ":links_renewed")) == 1)
            (renewed,) = mails_about(system.mail_dir, ":links_renewed")
            new_links = re.findall(r"(http://\S+/pdf\?token=\S+)", text_of(renewed))
            assert len(new_links) == 13 and not set(new_links) & set(links)
            assert (await http.get(new_links[0])).status_code == 200
            (new_space,) = re.findall(r"(http://\S+/space\?token=\S+)", text_of(renewed))
            assert (await http.get(new_space)).status_code == 200

            # One signed webhook for the decision, verified by an independent Standard
            # Webhooks implementation, listing the same 13 attestations.
            await eventually(lambda: len(receiver.verified) >= 1)
            assert not receiver.rejected
            (hook,) = hook_payloads(receiver)
            assert hook["type"] == "fr.certibloc.attestations.attestations-recorded.v1"
            assert hook["data"]["decision"] == "deliberation"
            assert len(hook["data"]["issued"]) == 13 and hook["data"]["revoked"] == []

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
            # The correction is one decision: one e-mail for what it revoked (both), one for
            # what it issued. The average still passes without BC01: the diploma is awarded
            # again, on the corrected grades, under a new attestation.
            await eventually(lambda: len(mails_about(system.mail_dir, ":revoked")) == 1)
            (revoked_mail,) = mails_about(system.mail_dir, ":revoked")
            assert sorted(attestation_ids(revoked_mail)) == sorted(
                a["verify_url"].rsplit("/", 1)[1] for a in (bc01, diploma)
            )
            now = await eventually(lambda: attestations("E1", 14))
            assert len(now) == 14
            diplomas = [a for a in now if a["kind"] == "certification"]
            assert len(diplomas) == 2
            renewed = next(a for a in diplomas if a["id"] != diploma["id"])
            assert await status(renewed["verify_url"]) == "valid"
            await eventually(lambda: len(mails_about(system.mail_dir, ":issued")) == 2)
            await eventually(lambda: len(receiver.verified) >= 2)
            corrected = hook_payloads(receiver)[1]["data"]
            assert corrected["decision"] == "correction"
            assert [a["code"] for a in corrected["issued"]] == ["RNCP40705"]
            assert sorted(a["code"] for a in corrected["revoked"]) == ["RNCP40705", "RNCP40705BC01"]

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
            # One e-mail and one webhook per decision and kind (and the new links): nothing
            # twice.
            await eventually(lambda: len(mails(system.mail_dir)) >= 5)
            final = mails(system.mail_dir)
            assert len(final) == 5 and len({m["Message-ID"] for m in final}) == 5
            await eventually(lambda: len(receiver.verified) >= 3)
            assert len(receiver.verified) == 3
            assert all(len(v) == 1 for v in receiver.verified.values())
            assert set(receptions(system.mail_dir).values()) == {1}  # none sent twice


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
