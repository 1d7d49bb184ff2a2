"""OpenID4VCI (pre-authorized code flow) over real HTTP: the offer made from the personal space,
the metadata, /oid4vci/token with the transaction code, /oid4vci/nonce, /oid4vci/credential with
the wallet's key proof, in the three formats; and the hostile cases, each an OAuth error (JSON,
never a 5xx): an expired offer, a code used twice, wrong transaction codes until the offer is
void, proofs with a wrong nonce, audience, iat, typ or signature, an unknown configuration, a
missing or expired access token."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.attestations.domain import sd_jwt
from services.attestations.domain.aggregates import Holder
from services.attestations.domain.offers import (
    MAX_TX_CODE_FAILURES,
    OFFER_LIFETIME,
    CredentialOffer,
    digest,
)
from services.attestations.oid4vci import (
    JWT_VC_JSON,
    LDP_VC,
    PRE_AUTHORIZED_GRANT,
    Offers,
    sd_jwt_configuration_id,
)
from tests.attestations.harness import Attestations
from tests.attestations.oid4vci_wallet import (
    credential,
    key_proof,
    nonce,
    oauth_error,
    offer_of,
    pre_authorized_code,
    public_jwk,
    token,
)
from tests.attestations.test_keys_pdf_cli import _issue
from tests.attestations.test_service import attestations_of
from tests.attestations.test_shares import space_token
from tests.registry.harness import CENTER_A, Registry

BLOC_CONFIGURATION = sd_jwt_configuration_id("RNCP40705", "bloc")


async def make_offer(
    http: httpx.AsyncClient, space: str, attestation_id: str
) -> tuple[str, dict[str, Any], str]:
    page = await http.post(
        "/space/wallet-offers", data={"token": space, "attestation": attestation_id}
    )
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "private, no-store"
    return offer_of(page.text)


def offers_at(att: Attestations, at: datetime) -> Offers:
    """The issuer as it was at ``at`` (to make offers and tokens that have expired since)."""
    return Offers(att.app, att.download_secret, lambda token: b"{}", clock=lambda: at)


async def test_a_wallet_gets_a_bound_sd_jwt_vc_from_the_space_offer(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await _issue(http, registry, "W1", "RNCP40705BC01")
        (item,) = await attestations_of(http, att, registry, "W1", 1)
        space = space_token(att, "W1")
        page = await http.get("/space", params={"token": space})
        assert "Mettre dans mon portefeuille numérique" in page.text
        assert 'action="/space/wallet-offers?lang=fr"' in page.text
        english = await http.get("/space", params={"token": space, "lang": "en"})
        assert "Add to my digital wallet" in english.text

        url, offer, tx_code = await make_offer(http, space, item["id"])
        assert url.startswith("openid-credential-offer://?credential_offer=")
        assert offer["credential_issuer"] == att.url
        assert offer["credential_configuration_ids"] == [BLOC_CONFIGURATION, JWT_VC_JSON, LDP_VC]
        grant = offer["grants"][PRE_AUTHORIZED_GRANT]
        assert grant["tx_code"]["input_mode"] == "numeric" and grant["tx_code"]["length"] == 6
        assert re.fullmatch(r"[0-9]{6}", tx_code)
        code = pre_authorized_code(offer)
        assert len(sd_jwt.b64url_decode(code)) >= 16  # ≥ 128 bits
        assert tx_code not in url  # the transaction code is not in the offer
        # The offer page's language switch (a GET) leads back to the space.
        switch = await http.get("/space/wallet-offers", params={"token": space, "lang": "en"})
        assert switch.status_code == 303
        assert switch.headers["location"].endswith("&lang=en#portefeuille")

        # The metadata a wallet reads.
        issuer = (await http.get("/.well-known/openid-credential-issuer")).json()
        assert issuer["credential_issuer"] == att.url
        assert issuer["credential_endpoint"] == f"{att.url}/oid4vci/credential"
        assert issuer["nonce_endpoint"] == f"{att.url}/oid4vci/nonce"
        configurations = issuer["credential_configurations_supported"]
        bloc = configurations[BLOC_CONFIGURATION]
        assert bloc["format"] == "dc+sd-jwt" and bloc["vct"] == f"{att.url}/vct/RNCP40705/bloc"
        assert bloc["cryptographic_binding_methods_supported"] == ["jwk"]
        assert "EdDSA" in bloc["proof_types_supported"]["jwt"]["proof_signing_alg_values_supported"]
        assert {d["locale"][:2] for d in bloc["credential_metadata"]["display"]} == {"fr", "en"}
        assert configurations[JWT_VC_JSON]["format"] == "jwt_vc_json"
        assert configurations[LDP_VC]["format"] == "ldp_vc"
        server = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert server["token_endpoint"] == f"{att.url}/oid4vci/token"
        assert server["pre-authorized_grant_anonymous_access_supported"] is True

        # /token: errors first (nothing redeemed), then the code with its transaction code.
        oauth_error(await token(http, code, None), 400, "invalid_request")
        oauth_error(
            await http.post(
                "/oid4vci/token", data={"grant_type": "authorization_code", "code": "x"}
            ),
            400,
            "unsupported_grant_type",
        )
        oauth_error(await token(http, "no-such-code", tx_code), 400, "invalid_grant")
        wrong = "000000" if tx_code != "000000" else "111111"
        left = oauth_error(await token(http, code, wrong), 400, "invalid_grant")
        assert f"{MAX_TX_CODE_FAILURES - 1} attempt(s) left" in left
        oauth_error(
            await http.post("/oid4vci/token", json={"grant_type": PRE_AUTHORIZED_GRANT}),
            400,
            "invalid_request",
        )
        granted = await token(http, code, tx_code)
        assert granted.status_code == 200, granted.text
        assert granted.headers["cache-control"] == "no-store"
        answer = granted.json()
        assert answer["token_type"] == "Bearer" and 0 < answer["expires_in"] <= 300
        access = answer["access_token"]
        # Once only.
        again = oauth_error(await token(http, code, tx_code), 400, "invalid_grant")
        assert "already used" in again

        # /credential: the bearer token, then the proof.
        body = {"credential_configuration_id": BLOC_CONFIGURATION}
        holder = Ed25519PrivateKey.generate()
        c_nonce = await nonce(http)
        good = {**body, "proofs": {"jwt": [key_proof(holder, aud=att.url, nonce=c_nonce)]}}
        oauth_error(await credential(http, None, good), 401, "invalid_token")
        oauth_error(await credential(http, access + "x", good), 401, "invalid_token")
        oauth_error(await credential(http, "garbage", good), 401, "invalid_token")
        oauth_error(await credential(http, access, body), 400, "invalid_proof")  # no proof
        other = Ed25519PrivateKey.generate()
        hostile = {
            "invalid_nonce": [
                key_proof(holder, aud=att.url, nonce="1.2.3"),
                key_proof(holder, aud=att.url, nonce=None),
            ],
            "invalid_proof": [
                key_proof(holder, aud="https://another.example", nonce=c_nonce),
                key_proof(holder, aud=att.url, nonce=c_nonce, iat=time.time() - 3600),
                key_proof(holder, aud=att.url, nonce=c_nonce, iat=time.time() + 3600),
                key_proof(holder, aud=att.url, nonce=c_nonce, typ="JWT"),
                key_proof(other, aud=att.url, nonce=c_nonce, jwk=public_jwk(holder)),
                key_proof(holder, aud=att.url, nonce=c_nonce, kid="did:example:1#k"),
                key_proof(holder, aud=att.url, nonce=c_nonce, alg="ES256"),
                key_proof(holder, aud=att.url, nonce=c_nonce, alg="none"),
                "not.a.jwt",
            ],
        }
        for error, proofs in hostile.items():
            for proof in proofs:
                refused = await credential(http, access, {**body, "proofs": {"jwt": [proof]}})
                oauth_error(refused, 400, error)
        oauth_error(
            await credential(
                http, access, {**good, "credential_configuration_id": "RNCP40705_bloc_mdoc"}
            ),
            400,
            "unknown_credential_configuration",
        )
        oauth_error(
            await credential(http, access, {"proofs": good["proofs"]}),
            400,
            "invalid_credential_request",
        )
        not_json = await http.post(
            "/oid4vci/credential",
            content=b"{",
            headers={"Authorization": f"Bearer {access}", "Content-Type": "application/json"},
        )
        oauth_error(not_json, 400, "invalid_credential_request")

        issued = await credential(http, access, good)
        assert issued.status_code == 200, issued.text
        assert issued.headers["cache-control"] == "no-store"
        (one,) = issued.json()["credentials"]
        parts = sd_jwt.split(one["credential"])
        claims = pyjwt.decode(parts.jwt, options={"verify_signature": False})
        assert claims["cnf"] == {"jwk": public_jwk(holder)}
        assert claims["vct"] == bloc["vct"]
        disclosed = {json.loads(sd_jwt.b64url_decode(d))[1] for d in parts.disclosures}
        assert {"given_name", "family_name", "bloc"} <= disclosed
        verified = await http.post(
            "/v1/verify",
            content=one["credential"],
            headers={"content-type": "application/dc+sd-jwt"},
        )
        assert verified.json()["valid"] is True, verified.json()
        # The same configuration twice, or the same c_nonce again: refused.
        denied = await credential(http, access, good)
        oauth_error(denied, 400, "credential_request_denied")
        reused = await credential(
            http, access, {"credential_configuration_id": JWT_VC_JSON, "proofs": good["proofs"]}
        )
        assert "already used" in oauth_error(reused, 400, "invalid_nonce")

        # The unbound forms: the stored vc+jwt, and its Data Integrity form.
        jwt_vc = await credential(http, access, {"credential_configuration_id": JWT_VC_JSON})
        assert jwt_vc.status_code == 200, jwt_vc.text
        stored = att.app.attestation(item["id"])
        assert stored is not None
        assert jwt_vc.json()["credentials"] == [{"credential": stored.credential}]
        ldp = await credential(http, access, {"credential_configuration_id": LDP_VC})
        assert ldp.status_code == 200, ldp.text
        document = ldp.json()["credentials"][0]["credential"]
        proofs = document["proof"] if isinstance(document["proof"], list) else [document["proof"]]
        assert [p["cryptosuite"] for p in proofs] == ["eddsa-rdfc-2022"]
        assert document["id"] == item["verify_url"]


async def test_offers_expire_and_wrong_transaction_codes_void_them(
    services: tuple[Registry, Attestations],
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await _issue(http, registry, "W2", "RNCP40705BC02")
        (item,) = await attestations_of(http, att, registry, "W2", 1)
        space = space_token(att, "W2")

        # Someone else's attestation, or an unknown one, is not offered.
        await _issue(http, registry, "W3", "RNCP40705BC03")
        (theirs,) = await attestations_of(http, att, registry, "W3", 1)
        for foreign in (theirs["id"], "x" * 22):
            refused = await http.post(
                "/space/wallet-offers", data={"token": space, "attestation": foreign}
            )
            assert refused.status_code == 403, refused.text
        stale = await http.post(
            "/space/wallet-offers", data={"token": "forged", "attestation": item["id"]}
        )
        assert stale.status_code == 403

        # Five wrong transaction codes: void, even for the right one afterwards.
        _, offer, tx_code = await make_offer(http, space, item["id"])
        code = pre_authorized_code(offer)
        wrong = "000000" if tx_code != "000000" else "111111"
        for _ in range(MAX_TX_CODE_FAILURES - 1):
            oauth_error(await token(http, code, wrong), 400, "invalid_grant")
        last = oauth_error(await token(http, code, wrong), 400, "invalid_grant")
        assert "void" in last
        assert "void" in oauth_error(await token(http, code, tx_code), 400, "invalid_grant")

        # An offer made eleven minutes ago has expired.
        holder = att.app.holder(CENTER_A, "W2")
        attestation = att.app.attestation(item["id"])
        assert holder is not None and attestation is not None
        past = datetime.now(UTC) - OFFER_LIFETIME - timedelta(minutes=1)
        old = offers_at(att, past).create(holder, attestation)
        old_code = pre_authorized_code(json.loads(_query(old.url)))
        expired = oauth_error(await token(http, old_code, old.tx_code), 400, "invalid_grant")
        assert "expired" in expired

        # An access token six minutes old has expired (the offer was still valid then).
        earlier = offers_at(att, datetime.now(UTC) - timedelta(minutes=6))
        made = earlier.create(holder, attestation)
        made_code = pre_authorized_code(json.loads(_query(made.url)))
        granted = earlier.token(
            {
                "grant_type": PRE_AUTHORIZED_GRANT,
                "pre-authorized_code": made_code,
                "tx_code": made.tx_code,
            }
        )
        late = await credential(
            http, granted["access_token"], {"credential_configuration_id": JWT_VC_JSON}
        )
        oauth_error(late, 401, "invalid_token")

        # Revoking the candidate's personal links voids their pending offers.
        _, pending, pending_tx = await make_offer(http, space, item["id"])
        revoked = await http.post(
            "/v1/candidates/W2/download-links/revoke", json={}, headers=registry.auth()
        )
        assert revoked.status_code == 202, revoked.text
        withdrawn = await token(http, pre_authorized_code(pending), pending_tx)
        assert "withdrawn" in oauth_error(withdrawn, 400, "invalid_grant")


def _query(url: str) -> str:
    return parse_qs(urlsplit(url).query)["credential_offer"][0]


async def test_what_the_review_found_stays_fixed(
    services: tuple[Registry, Attestations], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent guesses of the transaction code get no more comparisons than sequential
    ones; a non-ASCII nonce is refused, not a 500; an access token ends with the personal
    links; another record's id as an access token is invalid_token, not a 500."""
    registry, att = services
    async with httpx.AsyncClient(timeout=30, base_url=att.url) as http:
        await _issue(http, registry, "W5", "RNCP40705BC02")
        (item,) = await attestations_of(http, att, registry, "W5", 1)
        space = space_token(att, "W5")

        _, offer, tx_code = await make_offer(http, space, item["id"])
        code = pre_authorized_code(offer)
        wrong = "000000" if tx_code != "000000" else "111111"
        # Every comparison of a transaction code, whatever its request's outcome (the service
        # runs in this process): a guess compared but not counted was the flaw.
        comparisons: list[str] = []
        matches = CredentialOffer.tx_code_matches

        def counted(self: CredentialOffer, key: bytes, guess: str) -> bool:
            comparisons.append(guess)
            return matches(self, key, guess)

        monkeypatch.setattr(CredentialOffer, "tx_code_matches", counted)
        answers = await asyncio.gather(*(token(http, code, wrong) for _ in range(24)))
        monkeypatch.undo()
        assert 1 <= len(comparisons) <= MAX_TX_CODE_FAILURES
        assert {a.status_code for a in answers} == {400}
        compared = [
            a for a in answers if a.json()["error_description"].startswith("wrong transaction code")
        ]
        assert 1 <= len(compared) <= MAX_TX_CODE_FAILURES
        found = att.app.get_optional(CredentialOffer.create_id(digest(code)), CredentialOffer)
        assert found is not None and found.tx_code_failures == len(compared)

        # A fresh offer, redeemed; its proof with a nonce of non-ASCII text.
        _, offer, tx_code = await make_offer(http, space, item["id"])
        granted = await token(http, pre_authorized_code(offer), tx_code)
        access = granted.json()["access_token"]
        key = Ed25519PrivateKey.generate()
        proof = key_proof(key, aud=att.url, nonce="1.a.é")
        body = {"credential_configuration_id": BLOC_CONFIGURATION, "proofs": {"jwt": [proof]}}
        oauth_error(await credential(http, access, body), 400, "invalid_nonce")

        # Another record's id where the token names its offer: not a token of ours.
        holder_hex = Holder.create_id(CENTER_A, "W5").hex
        fake = f"{holder_hex}.{'x' * 43}"
        oauth_error(await credential(http, fake, body), 401, "invalid_token")

        # The center revokes the candidate's personal links: the access token ends at once.
        revoked = await http.post(
            "/v1/candidates/W5/download-links/revoke", json={}, headers=registry.auth()
        )
        assert revoked.status_code == 202
        body["proofs"] = {"jwt": [key_proof(key, aud=att.url, nonce=await nonce(http))]}
        gone = oauth_error(await credential(http, access, body), 401, "invalid_token")
        assert "withdrawn" in gone
