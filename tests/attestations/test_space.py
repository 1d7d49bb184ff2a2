"""The candidate's personal space, over real HTTP: what they hold, with its status and files,
behind their personal link, and nothing behind anyone else's."""

from __future__ import annotations

import re

import httpx
from markupsafe import escape

from services.runtime import tokens
from tests.attestations.harness import Attestations
from tests.attestations.test_keys_pdf_cli import _issue
from tests.attestations.test_service import attestations_of
from tests.registry.harness import CENTER_A, Registry


async def test_the_space_lists_what_the_candidate_holds_behind_their_link_only(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    secret, subject = att.download_secret, tokens.holder_subject(CENTER_A, "S1")
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await _issue(http, registry, "S1", "RNCP40705BC01")
        await _issue(http, registry, "S1", "RNCP40705BC02")
        await _issue(http, registry, "S2", "RNCP40705BC03")  # someone else's
        held = await attestations_of(http, att, registry, "S1", 2)
        await attestations_of(http, att, registry, "S2", 1)
        space = tokens.mint(secret, subject, None, 0, ttl_seconds=600)

        page = await http.get("/space", params={"token": space})
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "private, no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "<script" not in page.text and "style=" not in page.text
        html = page.text
        assert "En vigueur (2)" in html and "Révoquées" not in html
        for a in held:
            assert str(escape(a["title"])) in html and a["verify_url"] in html
        assert "RNCP40705BC03" not in html  # only theirs
        # Its links open each file with the same personal link.
        links = re.findall(r'href="(/v1/attestations/[^"]+)"', html)
        assert len(links) == 4
        for link in links:
            got = await http.get(link.replace("&amp;", "&"))
            assert got.status_code == 200, (link, got.text)

        # One attestation's link is not the space's; a forged or another's link opens nothing.
        one = tokens.mint(secret, subject, held[0]["id"], 0, ttl_seconds=600)
        other = tokens.mint(secret, tokens.holder_subject(CENTER_A, "S9"), None, 0, 600)
        for token in (one, other, space[:-3] + "AAA", "t2.x.y", "x" * 600):
            refused = await http.get("/space", params={"token": token})
            assert refused.status_code in (403, 422), (token, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
        assert (await http.get("/space")).status_code == 422

        # Revoked with the candidate's other links, at once.
        revoke = "/v1/candidates/S1/download-links/revoke"
        assert (await http.post(revoke, json={}, headers=registry.auth())).status_code == 202
        assert (await http.get("/space", params={"token": space})).status_code == 403
        renewed = tokens.mint(secret, subject, None, 1, ttl_seconds=600)
        assert (await http.get("/space", params={"token": renewed})).status_code == 200
