"""A second certification as data alone, end to end with the three services as processes.

The certification is the test fixture ``tests/data/referentials/RNCP99901.json`` (invented: its
own blocs, attestation policy, diploma rules and certifier), reached only through
``CERTIBLOC_REFERENTIALS_DIR`` (``tests/support/system.py`` gives it to every process, and to
the operator command here): a candidate registered for it, a PV validating its blocs and awarding
it, its attestations signed in its certifier's name (valid against both JSON Schemas, verified
by the service and by another JOSE library), one e-mail, and ``export-cpf`` giving a flux that
declares the award, valid against cpf-1.1.2.xsd."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pypdf
import pytest

from contracts import referential
from services.attestations.verification import schema_problems
from tests.attestations.test_service import independent_verify
from tests.registry.harness import candidate, pv
from tests.registry.test_cpf import NS, id_techniques, validate
from tests.support.mailbox import attestation_ids, mails, text_of
from tests.support.processes import eventually
from tests.support.system import FIXTURE_REFERENTIALS, System

REPO_ROOT = Path(__file__).resolve().parents[2]
CODE = "RNCP99901"  # the fixture's code: this test is the only place that names it
FIXTURE = json.loads((FIXTURE_REFERENTIALS / f"{CODE}.json").read_text("utf-8"))
CERTIFIER = FIXTURE["certifier"]
MANDATORY = [b["code"] for b in FIXTURE["blocs"] if not b["optional"]]


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    with System(tmp_path / "system") as running:
        yield running


def _export_cpf(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.registry", "export-cpf", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO_ROOT,
    )


def _payload(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


async def test_a_certification_added_as_data_goes_end_to_end(
    system: System, tmp_path: Path
) -> None:
    registry, att = system.url("registry"), system.url("attestations")
    auth = system.auth
    async with httpx.AsyncClient(timeout=30) as http:
        # The registry serves the fixture's referential, as data.
        served = await http.get(f"{registry}/v1/certifications/{CODE}")
        assert served.status_code == 200, served.text
        assert served.json()["certifier"] == CERTIFIER

        body = candidate(
            "X1",
            given_names=["Zoé"],
            email="zoe@example.org",
            certification=CODE,
            sex="F",
            birth_insee_code="69123",
            birth_country_code="100",
        )
        r = await http.post(f"{registry}/v1/candidates", json=body, headers=auth)
        assert r.status_code == 201, r.text
        lines = [
            {"candidate_number": "X1", "bloc": MANDATORY[0], "grade": "14"},
            {"candidate_number": "X1", "bloc": MANDATORY[1], "grade": "12,5"},
        ]
        created = await http.post(
            f"{registry}/v1/deliberations",
            json=pv(lines, certification=CODE),
            headers={**auth, "Idempotency-Key": "second-certification-pv-1"},
        )
        assert created.status_code == 201, created.text
        view = (await http.get(f"{registry}/v1/candidates/X1", headers=auth)).json()
        assert view["diploma"] is not None  # (2*14 + 12.5) / 3 = 13.5: awarded, "Assez bien"

        async def attestations(count: int) -> list[dict[str, Any]] | None:
            r = await http.get(
                f"{att}/v1/attestations", params={"candidate_number": "X1"}, headers=auth
            )
            items: list[dict[str, Any]] = r.json()["attestations"] if r.is_success else []
            return items if len(items) >= count else None

        # Continuing education: the fixture's policy grants bloc attestations; and the award.
        issued = await eventually(lambda: attestations(3))
        assert sorted(a["code"] for a in issued) == sorted([*MANDATORY, CODE])
        jwks = (await http.get(f"{att}/.well-known/jwks.json")).json()
        did = (await http.get(f"{att}/.well-known/did.json")).json()["id"]
        for item in issued:
            # The credential names the fixture's certifier, under the service's one did:web.
            jws = (
                await http.get(f"{att}/v1/attestations/{item['id']}/credential", headers=auth)
            ).text
            credential = independent_verify(jws, jwks)
            assert schema_problems(credential) == []  # VC 2.0 and OB 3.0 JSON Schemas
            issuer = credential["issuer"]
            assert issuer["id"] == did
            assert issuer["name"] == CERTIFIER["name"]
            assert [e["identifier"] for e in issuer["otherIdentifier"]] == [CERTIFIER["siret"]]
            achievement = credential["credentialSubject"]["achievement"]
            assert achievement["humanCode"] == item["code"]
            report = (
                await http.post(
                    f"{att}/v1/verify", content=jws, headers={"content-type": "application/vc+jwt"}
                )
            ).json()
            assert report["valid"] is True and report["status"] == "valid", report
            # The page and its JSON say who delivered it: the fixture's certifier.
            as_json = (
                await http.get(item["verify_url"], headers={"Accept": "application/json"})
            ).json()
            assert as_json["issuer"] == {"id": did, "name": CERTIFIER["name"]}
            assert as_json["achievement"]["certification"]["code"] == CODE
            page = await http.get(item["verify_url"])
            assert "Attestation valide" in page.text and CERTIFIER["name"] in page.text
        diploma = next(a for a in issued if a["kind"] == "certification")
        diploma_jws = (
            await http.get(f"{att}/v1/attestations/{diploma['id']}/credential", headers=auth)
        ).text
        # The status list is every certification's: it names the service, not a certifier.
        status_url = _payload(diploma_jws)["credentialStatus"]["statusListCredential"]
        status_list = _payload((await http.get(status_url)).text)
        assert status_list["issuer"] == {"id": did, "name": "certibloc"}

        # One e-mail, listing the three, whose links give PDFs "délivrée par" the certifier.
        await eventually(lambda: len(mails(system.mail_dir)) >= 1)
        (sent,) = mails(system.mail_dir)
        assert sent["To"].addresses[0].addr_spec == "zoe@example.org"
        assert FIXTURE["title"] in sent["Subject"]
        assert sorted(attestation_ids(sent)) == sorted(a["id"] for a in issued)
        text = text_of(sent)
        assert FIXTURE["title"] in text
        links = re.findall(r"(http://\S+/pdf\?token=\S+)", text)
        assert len(links) == 3
        pdf = await http.get(links[0])
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        pdf_text = " ".join(
            " ".join((p.extract_text() or "").split())
            for p in pypdf.PdfReader(BytesIO(pdf.content)).pages
        )
        assert f"Délivrée par {CERTIFIER['name']}" in pdf_text

    # The operator's CPF export, with the registry's own settings (its store, the same
    # CERTIBLOC_REFERENTIALS_DIR): the award is declared under the fixture's code.
    env = system.services["registry"].env
    assert env[referential.REFERENTIALS_DIR_ENV] == str(FIXTURE_REFERENTIALS)
    out = tmp_path / "flux.xml"
    export = _export_cpf(env, "--since", "2026-01-01", "--out", str(out))
    assert export.returncode == 0, export.stderr
    document = validate(out.read_bytes(), tmp_path)
    assert id_techniques(document) == [view["cpf_declaration"]["id_technique"]]
    certification = document.find(".//cpf:certification", namespaces=NS)
    assert certification is not None
    assert certification.findtext("cpf:type", namespaces=NS) == "RNCP"
    assert certification.findtext("cpf:code", namespaces=NS) == CODE
    passage = document.find(".//cpf:passageCertification", namespaces=NS)
    assert passage is not None
    assert passage.findtext("cpf:dateDebutValidite", namespaces=NS) == "2026-07-03"
    assert passage.findtext("cpf:mentionValidee", namespaces=NS) == "MENTION_ASSEZ_BIEN"
    assert document.findtext(".//cpf:titulaire/cpf:nomNaissance", namespaces=NS) == "Durand"
    assert document.findtext(".//cpf:titulaire/cpf:sexe", namespaces=NS) == "F"
