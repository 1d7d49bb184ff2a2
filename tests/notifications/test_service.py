"""Notifications end to end: a PV becomes attestations, one e-mail per candidate listing
them with working download links, and one signed webhook to the exam center; failures are
retried, then listed."""

from __future__ import annotations

import email
import email.policy
import re
from typing import Any

import httpx

from tests.attestations.harness import Attestations
from tests.attestations.test_service import until
from tests.notifications.harness import Notifications
from tests.notifications.test_webhooks import Receiver, Reply
from tests.registry.harness import Registry, candidate, full_lines, pv
from tests.support.processes import ServedApp


def read_mail(path: Any) -> email.message.EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


async def test_pv_sends_one_mail_per_candidate_and_one_signed_webhook(
    everything: tuple[Registry, Attestations, Notifications],
) -> None:
    registry, _, notes = everything
    receiver = Receiver(secret="")
    with ServedApp(receiver.app()) as hook_server:
        async with httpx.AsyncClient(timeout=30) as http:
            auth = registry.auth()
            registered = await http.post(
                f"{notes.url}/v1/webhooks", headers=auth, json={"url": f"{hook_server.url}/hooks"}
            )
            assert registered.status_code == 201, registered.text
            receiver.secret = registered.json()["secret"]
            assert receiver.secret.startswith("whsec_")
            listed = (await http.get(f"{notes.url}/v1/webhooks", headers=auth)).json()
            assert "secret" not in listed

            await http.post(
                f"{registry.url}/v1/candidates",
                json=candidate("N1", given_names=["Inès"], email="ines@example.org"),
                headers=auth,
            )
            lines = [
                x for x in full_lines("N1", "15") if x["bloc"] in ("RNCP40705BC01", "RNCP40705BC02")
            ]
            assert (
                await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
            ).status_code == 201

            await until(lambda: _count(notes.mails(), 1))
            (mail,) = [read_mail(p) for p in notes.mails()]
            assert mail["To"].addresses[0].addr_spec == "ines@example.org"
            assert "2 attestations" in str(mail["Subject"])
            text = mail.get_body(preferencelist=("plain",))
            assert text is not None
            body = text.get_content()
            assert "Inès Durand" in body
            assert "RNCP40705BC01" in body and "RNCP40705BC02" in body
            links = re.findall(r"(http://\S+/pdf\?token=\S+)", body)
            assert len(links) == 2, body
            for link in links:
                pdf = await http.get(link)
                assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

            await until(lambda: _count(receiver.verified, 1))
            ((payload, _),) = [p for items in receiver.verified.values() for p in items]
            assert payload["type"] == "fr.certibloc.attestations.attestations-recorded.v1"
            assert sorted(a["code"] for a in payload["data"]["issued"]) == [
                "RNCP40705BC01",
                "RNCP40705BC02",
            ]
            assert not receiver.rejected

            async def delivered() -> list[dict[str, Any]] | None:
                r = await http.get(
                    f"{notes.url}/v1/notifications", params={"candidate_number": "N1"}, headers=auth
                )
                items: list[dict[str, Any]] = r.json()["notifications"]
                done = [n for n in items if n["state"] == "sent"]
                return items if len(done) == 2 else None

            items = await until(delivered)
            assert {n["channel"] for n in items} == {"email", "webhook"}
            assert all(n["attempts"] == 1 for n in items)


async def test_failing_webhook_is_retried_then_given_up_and_replayed(
    everything: tuple[Registry, Attestations, Notifications],
) -> None:
    registry, _, notes = everything
    receiver = Receiver(secret="", replies=FailByDefault())
    with ServedApp(receiver.app()) as hook_server:
        async with httpx.AsyncClient(timeout=30) as http:
            auth = registry.auth()
            registered = await http.post(
                f"{notes.url}/v1/webhooks", headers=auth, json={"url": f"{hook_server.url}/hooks"}
            )
            receiver.secret = registered.json()["secret"]
            await http.post(f"{registry.url}/v1/candidates", json=candidate("N2"), headers=auth)
            lines = [x for x in full_lines("N2", "12") if x["bloc"] == "RNCP40705BC03"]
            await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)

            async def gave_up() -> list[dict[str, Any]] | None:
                r = await http.get(f"{notes.url}/v1/notifications/failed", headers=auth)
                found: list[dict[str, Any]] = r.json()["notifications"]
                return found or None

            failed = await until(gave_up, timeout=60)
            key = failed[0]["delivery_key"]
            assert key.startswith("hook:") and failed[0]["channel"] == "webhook"
            assert failed[0]["attempts"] == 8
            assert [h["outcome"] for h in failed[0]["history"]][-1] == "gave_up"
            receiver.replies[key] = Reply(status=200)
            replayed = await http.post(f"{notes.url}/v1/notifications/{key}/replay", headers=auth)
            assert replayed.status_code == 200

            async def sent() -> bool:
                r = await http.get(
                    f"{notes.url}/v1/notifications", params={"candidate_number": "N2"}, headers=auth
                )
                return any(
                    n["delivery_key"] == key and n["state"] == "sent"
                    for n in r.json()["notifications"]
                )

            await until(sent, timeout=30)
            assert len(receiver.verified[key]) == 9  # 8 failed attempts + the replay


class FailByDefault(dict[str, Reply]):
    """The exam center's endpoint answers 503 until a reply is set for a delivery."""

    def get(self, key: str, default: Any = None) -> Reply:  # type: ignore[override]
        return super().get(key) or Reply(status=503)


async def _count(items: Any, n: int) -> bool:
    return len(items) >= n
