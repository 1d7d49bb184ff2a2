"""Key rotation keeps old attestations valid; the PDF is built on first download, signed, and
accepted by the verify API; the offline CLI checks a credential against a saved JWKS."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from services.attestations.keys import KeyStore
from services.runtime import tokens
from tests.attestations.harness import Attestations
from tests.attestations.test_service import attestations_of, independent_verify, until
from tests.attestations.test_verify_hostile import _annotate
from tests.registry.harness import CENTER_A, Registry, candidate, full_lines, pv


async def offline_verify(
    document: Path, jwks: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m services.attestations verify DOCUMENT --jwks JWKS``, the offline check."""
    command = [sys.executable, "-m", "services.attestations", "verify", str(document)]
    return await asyncio.to_thread(
        subprocess.run, [*command, "--jwks", str(jwks)], env=env, capture_output=True, text=True
    )


async def _issue(http: httpx.AsyncClient, registry: Registry, number: str, bloc: str) -> None:
    auth = registry.auth()
    await http.post(f"{registry.url}/v1/candidates", json=candidate(number), headers=auth)
    lines = [line for line in full_lines(number, "14") if line["bloc"] == bloc]
    created = await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)
    assert created.status_code == 201


async def test_rotation_keeps_earlier_attestations_verifiable(
    services: tuple[Registry, Attestations], tmp_path: Path
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30) as http:
        await _issue(http, registry, "R1", "RNCP40705BC01")
        (first,) = await attestations_of(http, att, registry, "R1", 1)
        old = (
            await http.get(
                f"{att.url}/v1/attestations/{first['id']}/credential", headers=registry.auth()
            )
        ).text
        store = KeyStore(att.var / "keys" / "attestations")
        old_kid = store.active_kid()
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.attestations", "rotate-key"],
            env={"CERTIBLOC_VAR_DIR": str(att.var), "PATH": ""},
            check=True,
            capture_output=True,
        )
        assert store.active_kid() != old_kid
        for key_file in store.directory.glob("*.jwk"):
            assert key_file.stat().st_mode & 0o777 == 0o600

        async def rotated_jwks() -> dict[str, object] | None:
            jwks: dict[str, object] = (await http.get(f"{att.url}/.well-known/jwks.json")).json()
            return jwks if len(jwks["keys"]) == 2 else None  # type: ignore[arg-type]

        jwks = await until(rotated_jwks)
        await _issue(http, registry, "R2", "RNCP40705BC02")
        (second,) = await attestations_of(http, att, registry, "R2", 1)

        async def signed_with_new_key() -> str | None:
            return (
                await http.get(
                    f"{att.url}/v1/attestations/{second['id']}/credential", headers=registry.auth()
                )
            ).text

        new = await until(signed_with_new_key)
        for token in (old, new):
            independent_verify(token, jwks)  # type: ignore[arg-type]
            report = (
                await http.post(
                    f"{att.url}/v1/verify",
                    content=token,
                    headers={"content-type": "application/vc+jwt"},
                )
            ).json()
            assert report["valid"] is True
        assert independent_verify(new, jwks)["id"].endswith(second["id"])  # type: ignore[arg-type]

        # Offline: a saved JWKS is enough to check signature, key and schema.
        (tmp_path / "jwks.json").write_text(json.dumps(jwks))
        (tmp_path / "old.vc.jwt").write_text(old)
        offline = await offline_verify(tmp_path / "old.vc.jwt", tmp_path / "jwks.json")
        assert offline.returncode == 0, offline.stdout + offline.stderr
        assert "authentique" in offline.stdout
        (tmp_path / "forged.vc.jwt").write_text(
            old[:-4] + ("AAAA" if not old.endswith("AAAA") else "BBBB")
        )
        forged = await offline_verify(tmp_path / "forged.vc.jwt", tmp_path / "jwks.json")
        assert forged.returncode == 1 and "signature" in forged.stdout


async def test_pdf_is_built_once_signed_and_verifiable(
    services: tuple[Registry, Attestations], tmp_path: Path
) -> None:
    registry, att = services
    async with httpx.AsyncClient(timeout=30) as http:
        await _issue(http, registry, "P1", "RNCP40705BC03")
        (item,) = await attestations_of(http, att, registry, "P1", 1)
        url = f"{att.url}/v1/attestations/{item['id']}/pdf"
        holder = tokens.holder_subject(CENTER_A, "P1")
        token = tokens.mint(att.download_secret, holder, item["id"], 0, ttl_seconds=600)
        first = await http.get(url, params={"token": token})
        assert first.status_code == 200 and first.headers["content-type"] == "application/pdf"
        assert first.content.startswith(b"%PDF")
        cached = att.var / "pdf" / f"{item['id']}.pdf"
        assert cached.exists()
        again = await http.get(url, headers=registry.auth())
        assert again.content == first.content  # served from the cache, not rebuilt
        report = (
            await http.post(
                f"{att.url}/v1/verify",
                content=first.content,
                headers={"content-type": "application/pdf"},
            )
        ).json()
        assert report["valid"] is True and report["status"] == "valid"

        # Offline, a PDF is checked as a PDF too (its PAdES signature against the service's
        # certificate) and names its holder; an updated copy fails.
        jwks = (await http.get(f"{att.url}/.well-known/jwks.json")).json()
        (tmp_path / "jwks.json").write_text(json.dumps(jwks))
        (tmp_path / "genuine.pdf").write_bytes(first.content)
        (tmp_path / "annotated.pdf").write_bytes(_annotate(first.content, "Marc Imposteur"))

        env = {"CERTIBLOC_VAR_DIR": str(att.var), "PATH": ""}

        async def offline(name: str) -> subprocess.CompletedProcess[str]:
            return await offline_verify(tmp_path / name, tmp_path / "jwks.json", env=env)

        genuine = await offline("genuine.pdf")
        assert genuine.returncode == 0, genuine.stdout + genuine.stderr
        assert "pades" in genuine.stdout and "titulaire : " in genuine.stdout
        annotated = await offline("annotated.pdf")
        assert annotated.returncode == 1, annotated.stdout + annotated.stderr
        assert "ÉCHEC  pades" in annotated.stdout
        expired = tokens.mint(att.download_secret, holder, item["id"], 0, ttl_seconds=-1)
        assert (await http.get(url, params={"token": expired})).status_code == 403
        not_pdf = (
            await http.post(
                f"{att.url}/v1/verify",
                content=b"%PDF-1.7 nothing",
                headers={"content-type": "application/pdf"},
            )
        ).json()
        assert not_pdf["valid"] is False


async def test_a_token_signed_before_did_url_kids_still_verifies(
    services: tuple[Registry, Attestations], tmp_path: Path
) -> None:
    """A deployment upgraded from bare kids: its old key (a file without ``did_url_kid``) is
    published under its DID URL and its bare kid, and a token it signed then (a bare kid, no
    iss nor jti) passes POST /v1/verify and the offline CLI, as before."""
    from tests.attestations.test_did_kid import LEGACY, LEGACY_KID, LEGACY_TOKEN

    _, att = services
    keys = att.var / "keys" / "attestations"
    shutil.copy(LEGACY / f"{LEGACY_KID}.jwk", keys / f"{LEGACY_KID}.jwk")  # a retired key
    async with httpx.AsyncClient(timeout=30) as http:
        jwks = (await http.get(f"{att.url}/.well-known/jwks.json")).json()
        did = (await http.get(f"{att.url}/.well-known/did.json")).json()
        kids = [k["kid"] for k in jwks["keys"]]
        assert f"{did['id']}#{LEGACY_KID}" in kids and LEGACY_KID in kids
        assert f"{did['id']}#{LEGACY_KID}" in {m["id"] for m in did["verificationMethod"]}
        report = (
            await http.post(
                f"{att.url}/v1/verify",
                content=LEGACY_TOKEN,
                headers={"content-type": "application/vc+jwt"},
            )
        ).json()
        checks = {c["name"]: c["ok"] for c in report["checks"]}
        # Signed by this deployment's old key; its id names another base URL (the fixture's),
        # so its status is unknown here.
        assert checks == {
            "format": True,
            "issuer-key": True,
            "signature": True,
            "claims": True,
            "schema": True,
            "status": False,
        }
        assert report["status"] == "unknown"
    strict = {"keys": [k for k in jwks["keys"] if "#" in k["kid"]]}  # DID URL kids only
    (tmp_path / "jwks.json").write_text(json.dumps(strict))
    (tmp_path / "old.vc.jwt").write_text(LEGACY_TOKEN)
    offline = await offline_verify(tmp_path / "old.vc.jwt", tmp_path / "jwks.json")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "authentique" in offline.stdout
