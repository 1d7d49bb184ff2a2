"""Personal download links: each opens one attestation of one candidate, and the candidate's
exam center (or an operator) can revoke them all at once, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import subprocess
import sys
import time

import httpx
import orjson

from services.attestations.translation import translator
from services.runtime import tokens
from tests.attestations.harness import Attestations
from tests.attestations.test_keys_pdf_cli import _issue
from tests.attestations.test_service import attestations_of
from tests.registry.harness import CENTER_A, CENTER_B, Registry


def legacy_token(secret: bytes, subject: str, ttl: int = 600) -> str:
    """A token as minted before 2026-12 (``t1``: the candidate, every attestation)."""
    claims = (
        base64.urlsafe_b64encode(orjson.dumps({"c": subject, "e": int(time.time()) + ttl}))
        .rstrip(b"=")
        .decode()
    )
    mac = hmac.new(secret, f"t1.{claims}".encode(), hashlib.sha256).digest()
    return f"t1.{claims}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


async def test_links_open_one_attestation_until_the_center_revokes_them(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    secret, subject = att.download_secret, tokens.holder_subject(CENTER_A, "L1")
    async with httpx.AsyncClient(timeout=30) as http:
        await _issue(http, registry, "L1", "RNCP40705BC01")
        await _issue(http, registry, "L1", "RNCP40705BC02")
        one, two = await attestations_of(http, att, registry, "L1", 2)

        def url(item: dict[str, str], what: str = "credential") -> str:
            return f"{att.url}/v1/attestations/{item['id']}/{what}"

        async def status(item: dict[str, str], token: str) -> int:
            return (await http.get(url(item), params={"token": token})).status_code

        first = tokens.mint(secret, subject, one["id"], 0, ttl_seconds=600)
        legacy = legacy_token(secret, subject)
        assert await status(one, first) == 200
        opened = await http.get(url(one, "pdf"), params={"token": first})
        assert opened.headers["cache-control"] == "private, no-store"  # revocable: not kept
        assert opened.headers["referrer-policy"] == "no-referrer"
        assert await status(two, first) == 403  # a link opens its own attestation only
        assert await status(one, legacy) == 200 and await status(two, legacy) == 200

        revoke = f"{att.url}/v1/candidates/L1/download-links/revoke"
        assert (await http.post(revoke, json={})).status_code == 401
        assert (await http.post(revoke, json={}, headers=registry.auth(CENTER_B))).status_code in (
            401,
            404,
        )
        unknown = await http.post(
            f"{att.url}/v1/candidates/NOPE/download-links/revoke", json={}, headers=registry.auth()
        )
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"
        bad = await http.post(revoke, json={"send_new_links": "x" * 10}, headers=registry.auth())
        assert bad.status_code == 422
        odd = await http.post(
            f"{att.url}/v1/candidates/%2E%2E%2Fx/download-links/revoke",
            json={},
            headers=registry.auth(),
        )
        assert odd.status_code in (404, 422)
        assert await status(one, first) == 200  # nothing changed so far

        done = await http.post(revoke, json={"send_new_links": True}, headers=registry.auth())
        assert done.status_code == 202, done.text
        assert done.json()["new_links_sent"] is True
        # At once: every link sent so far opens nothing, old-style ones included.
        assert await status(one, first) == 403 and await status(one, legacy) == 403
        forbidden = await http.get(url(one, "pdf"), params={"token": first})
        assert "révoqué" in forbidden.json()["detail"]
        renewed = tokens.mint(secret, subject, one["id"], 1, ttl_seconds=600)
        assert await status(one, renewed) == 200
        assert (await http.get(url(one), headers=registry.auth())).status_code == 200  # center

        # The operator's command does the same, from another process on the same store.
        done_by_cli = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "services.attestations",
                "revoke-links",
                "--center",
                CENTER_A,
                "--candidate",
                "L1",
            ],
            env={"CERTIBLOC_VAR_DIR": str(att.var), "PATH": ""},
            capture_output=True,
            text=True,
        )
        assert done_by_cli.returncode == 0, done_by_cli.stderr
        assert await status(one, renewed) == 403
        assert await status(one, tokens.mint(secret, subject, one["id"], 2, 600)) == 200

    # Published: one download-links-revoked each time, the one asking for new links naming
    # what is in force.
    app = att.app
    published = [
        out.event
        for n in app.process_recorder.select_notifications(start=1, limit=1000)
        for out in translator(app.links.verify)(app.mapper.to_domain_event(n))
        if out.event_type.endswith("download-links-revoked.v1")
    ]
    assert [(e.links_epoch, e.send_new_links) for e in published] == [(1, True), (2, False)]  # type: ignore[attr-defined]
    assert {a.attestation_id for a in published[0].attestations} == {one["id"], two["id"]}  # type: ignore[attr-defined]
    assert published[1].attestations == []  # type: ignore[attr-defined]
