"""A minimal OpenID4VCI wallet for the tests: the offer from the space's page, the requests of
the pre-authorized code flow, key proofs (good ones and hostile ones)."""

from __future__ import annotations

import base64
import json
import re
import time
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.attestations.oid4vci import PRE_AUTHORIZED_GRANT

OFFER_LINK = re.compile(r'href="(openid-credential-offer://[^"]+)"')
TX_CODE = re.compile(r'class="code-transaction">[^<]*<strong>([0-9]+)</strong>')


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def offer_of(page: str) -> tuple[str, dict[str, Any], str]:
    """(offer URL, the credential offer, the transaction code) of the offer page."""
    (url,) = OFFER_LINK.findall(page)
    url = unescape(url)
    (tx_code,) = TX_CODE.findall(page)
    offer = json.loads(parse_qs(urlsplit(url).query)["credential_offer"][0])
    return url, offer, tx_code


def pre_authorized_code(offer: dict[str, Any]) -> str:
    code: str = offer["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
    return code


def public_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_key().public_bytes_raw())}


def key_proof(
    key: Ed25519PrivateKey,
    *,
    aud: str,
    nonce: str | None,
    iat: float | None = None,
    typ: str = "openid4vci-proof+jwt",
    jwk: dict[str, str] | None = None,
    **header: Any,
) -> str:
    """A key proof JWT signed by ``key`` (its header naming ``jwk``, by default key's own)."""
    head = {"alg": "EdDSA", "typ": typ, "jwk": jwk or public_jwk(key), **header}
    payload: dict[str, Any] = {"aud": aud, "iat": int(iat if iat is not None else time.time())}
    if nonce is not None:
        payload["nonce"] = nonce
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


async def token(
    http: httpx.AsyncClient, code: str, tx_code: str | None, **more: str
) -> httpx.Response:
    form = {"grant_type": PRE_AUTHORIZED_GRANT, "pre-authorized_code": code, **more}
    if tx_code is not None:
        form["tx_code"] = tx_code
    return await http.post("/oid4vci/token", data=form)


async def nonce(http: httpx.AsyncClient) -> str:
    answer = await http.post("/oid4vci/nonce")
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["c_nonce"]
    return value


async def credential(
    http: httpx.AsyncClient, access_token: str | None, body: dict[str, Any]
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    return await http.post("/oid4vci/credential", json=body, headers=headers)


def oauth_error(answer: httpx.Response, status: int, error: str) -> str:
    """The error description, after checking the answer is the OAuth error expected."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json", answer.headers
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["error"] == error, body
    if status == 401:
        assert answer.headers["www-authenticate"] == f'Bearer error="{error}"'
    description: str = body["error_description"]
    return description
