"""The CPF declaration (*accrochage*): candidate fields, the flux (valid against cpf-1.1.2.xsd,
checked with lxml and with xmllint), the certifier-only routes, the operator commands and the
Caisse des Dépôts' acknowledgement, over real HTTP on a real SQLite store."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from services.registry.cpf import ack as cpf_ack
from tests.registry.harness import (
    CENTER_A,
    JURY,
    Registry,
    candidate,
    full_lines,
    pv,
    serve_registry,
)
from tests.support.processes import NatsServer

XSD = Path(__file__).parents[2] / "services" / "registry" / "cpf" / "cpf-1.1.2.xsd"
NS = {"cpf": "urn:cdc:cpf:pc5:schema:1.0.0"}
CERTIFIER_KEY = "cert_test-key-0123456789abcdefghijklmnopqrstuv"
CPF = {"sex": "F", "birth_insee_code": "75056", "birth_country_code": "100"}


@pytest.fixture
def served(tmp_path: Path, nats_server: NatsServer, clean_streams: None) -> Iterator[Registry]:
    key_file = tmp_path / "certifier.key"
    key_file.write_text(CERTIFIER_KEY + "\n")
    with serve_registry(tmp_path / "var", nats_server.url, certifier_key_file=key_file) as r:
        yield r


@pytest.fixture
async def http(served: Registry) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
        yield client


CERTIFIER = {"Authorization": f"Bearer {CERTIFIER_KEY}"}


def validate(xml: bytes, tmp_path: Path) -> etree._Element:
    """Valid against the schema with lxml, and with xmllint where it is installed."""
    document = etree.fromstring(xml)
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(document), schema.error_log
    xmllint = shutil.which("xmllint")
    if xmllint:
        path = tmp_path / "flux-check.xml"
        path.write_bytes(xml)
        done = _xmllint(xmllint, path)
        assert done.returncode == 0, done.stderr
    return document


def _xmllint(xmllint: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [xmllint, "--noout", "--schema", str(XSD), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def id_techniques(document: etree._Element) -> list[str]:
    return [
        str(t)
        for t in document.xpath("//cpf:passageCertification/cpf:idTechnique/text()", namespaces=NS)
    ]


async def seed(http: httpx.AsyncClient, served: Registry) -> dict[str, Any]:
    """C1 (all fields, exam, mention), C2 (no CPF fields, exam), V1 (VAE, postal code)."""
    auth = served.auth()
    for body in (
        candidate("C1", **CPF),
        candidate("C2"),
        candidate(
            "V1",
            access_route="vae",
            candidate_group=3,
            sex="M",
            birth_postal_code="69001",
            usage_name="Martin",
        ),
    ):
        assert (await http.post("/v1/candidates", json=body, headers=auth)).status_code == 201
    lines = full_lines("C1", "13,5") + full_lines("C2", "12")
    deliberation = await http.post("/v1/deliberations", json=pv(lines), headers=auth)
    assert deliberation.status_code == 201, deliberation.text
    vae = await http.post(
        "/v1/vae-decisions",
        json={
            "candidate_number": "V1",
            "certification": "RNCP40705",
            "decided_on": "2026-07-10",
            "jury": JURY,
            "decision": "totale",
        },
        headers=auth,
    )
    assert vae.status_code == 201, vae.text
    ids = {}
    for number in ("C1", "C2", "V1"):
        view = (await http.get(f"/v1/candidates/{number}", headers=auth)).json()
        assert view["diploma"] is not None, number
        ids[number] = view["cpf_declaration"]["id_technique"]
    return {"ids": ids, "deliberation_id": deliberation.json()["deliberation_id"]}


# --- registration ------------------------------------------------------------------------


async def test_registration_with_without_and_completing_the_cpf_fields(
    http: httpx.AsyncClient, served: Registry
) -> None:
    auth = served.auth()
    first = await http.post("/v1/candidates", json=candidate("C10"), headers=auth)
    assert first.status_code == 201
    assert first.json()["sex"] is None and first.json()["birth_insee_code"] is None
    # Registering again with the fields completes the record (an event), answered 200.
    body = candidate("C10", sex="F", birth_insee_code="2A004", birth_country_code="100")
    completed = await http.post("/v1/candidates", json=body, headers=auth)
    assert completed.status_code == 200, completed.text
    view = (await http.get("/v1/candidates/C10", headers=auth)).json()
    assert (view["sex"], view["birth_insee_code"], view["birth_country_code"]) == (
        "F",
        "2A004",
        "100",
    )
    assert [h["event"] for h in view["history"]] == ["Registered", "CpfDetailsAdded"]
    # The same again: nothing new. Without the fields: nothing taken away.
    assert (await http.post("/v1/candidates", json=body, headers=auth)).status_code == 200
    assert (
        await http.post("/v1/candidates", json=candidate("C10"), headers=auth)
    ).status_code == 200
    again = (await http.get("/v1/candidates/C10", headers=auth)).json()
    assert len(again["history"]) == 2 and again["sex"] == "F"
    # Another value for a field the record has: a conflicting identity.
    conflict = await http.post("/v1/candidates", json={**body, "sex": "M"}, headers=auth)
    assert conflict.status_code == 409
    assert "sex" in conflict.json()["detail"]
    born_abroad = candidate("C11", sex="M", birth_insee_code="99134", birth_country_code="134")
    assert (await http.post("/v1/candidates", json=born_abroad, headers=auth)).status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sex", "X"),
        ("sex", "f"),
        ("sex", 1),
        ("sex", "M" * 1000),
        ("birth_insee_code", "7505"),
        ("birth_insee_code", "750560"),
        ("birth_insee_code", "ABCDE"),
        ("birth_insee_code", "2C004"),
        ("birth_insee_code", 75056),
        ("birth_insee_code", "7505\u200b6"),
        ("birth_postal_code", "1234567890"),
        ("birth_postal_code", "75<01"),
        ("birth_postal_code", ""),
        ("birth_country_code", "FRA"),
        ("birth_country_code", "1000"),
        ("birth_country_code", "099"),
        ("birth_country_code", "134"),  # born in Paris (75056), not in Spain
    ],
)
async def test_bad_cpf_values_get_a_french_422_naming_the_field_and_record_nothing(
    http: httpx.AsyncClient, served: Registry, field: str, value: Any
) -> None:
    body = candidate("C20", **{**CPF, field: value})
    response = await http.post("/v1/candidates", json=body, headers=served.auth())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["reason"] and "Input should" not in errors[0]["reason"]  # French
    assert (await http.get("/v1/candidates/C20", headers=served.auth())).status_code == 404


async def test_a_birth_abroad_must_agree_with_its_country(
    http: httpx.AsyncClient, served: Registry
) -> None:
    body = candidate("C21", sex="F", birth_insee_code="99134", birth_country_code="100")
    response = await http.post("/v1/candidates", json=body, headers=served.auth())
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "birth_country_code"
    assert "pays de naissance" in response.json()["errors"][0]["reason"]


# --- the flux ----------------------------------------------------------------------------


async def test_the_certifier_route_gives_a_valid_flux_with_stable_ids(
    http: httpx.AsyncClient, served: Registry, tmp_path: Path
) -> None:
    seeded = await seed(http, served)
    ids = seeded["ids"]
    first = await http.get("/v1/cpf/flux", params={"since": "2026-01-01"}, headers=CERTIFIER)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/xml")
    assert (first.headers["CPF-Declared"], first.headers["CPF-Incomplete"]) == ("2", "1")
    document = validate(first.content, tmp_path)
    # Each award once; the holder without sex and birth commune is left out, not guessed.
    assert sorted(id_techniques(document)) == sorted([ids["C1"], ids["V1"]])
    assert ids["C1"] == _award_id(served, "C1")  # the idTechnique is the award's own id
    c1 = document.xpath(
        f"//cpf:passageCertification[cpf:idTechnique='{ids['C1']}']", namespaces=NS
    )[0]
    assert c1.findtext("cpf:mentionValidee", namespaces=NS) == "MENTION_ASSEZ_BIEN"
    assert c1.findtext("cpf:dateDebutValidite", namespaces=NS) == "2026-07-03"
    assert c1.findtext(".//cpf:modaliteAcces", namespaces=NS) == (
        "FORMATION_CONTINUE_HORS_CONTRAT_DE_PROFESSIONNALISATION"
    )
    assert c1.findtext(".//cpf:sexe", namespaces=NS) == "F"
    assert c1.findtext(".//cpf:codeInsee", namespaces=NS) == "75056"
    assert c1.findtext(".//cpf:anneeNaissance", namespaces=NS) == "1994"
    v1 = document.xpath(
        f"//cpf:passageCertification[cpf:idTechnique='{ids['V1']}']", namespaces=NS
    )[0]
    assert v1.findtext(".//cpf:modaliteAcces", namespaces=NS) == "VAE"
    assert v1.findtext(".//cpf:codePostal", namespaces=NS) == "69001"
    assert v1.findtext(".//cpf:nomUsage", namespaces=NS) == "Martin"
    assert document.findtext(".//cpf:certification/cpf:code", namespaces=NS) == "RNCP40705"
    assert document.findtext(".//cpf:certification/cpf:type", namespaces=NS) == "RNCP"
    # A second export: the same passages under the same ids, in a flux of its own.
    second = await http.get("/v1/cpf/flux", params={"since": "2026-01-01"}, headers=CERTIFIER)
    again = validate(second.content, tmp_path)
    assert id_techniques(again) == id_techniques(document)
    assert again.findtext("cpf:idFlux", namespaces=NS) != document.findtext(
        "cpf:idFlux", namespaces=NS
    )
    report = (
        await http.get("/v1/cpf/report", params={"since": "2026-01-01"}, headers=CERTIFIER)
    ).json()
    assert report["incomplete"] == [
        {
            "exam_center": CENTER_A,
            "candidate_number": "C2",
            "id_technique": ids["C2"],
            "missing": ["sex", "birth_insee_code"],
        }
    ]
    # Nothing recorded after that day: nothing to declare.
    later = await http.get("/v1/cpf/flux", params={"since": "2099-01-01"}, headers=CERTIFIER)
    assert later.status_code == 204


def _award_id(served: Registry, number: str) -> str:
    from services.registry.domain import ids

    found = served.app.repository.get(ids.candidate_id(CENTER_A, number))
    assert found.award is not None
    return str(found.award.award_id)


async def test_the_cpf_routes_are_the_certifiers_only(
    http: httpx.AsyncClient, served: Registry, tmp_path: Path
) -> None:
    since = {"since": "2026-01-01"}
    for route in ("/v1/cpf/flux", "/v1/cpf/report"):
        missing = await http.get(route, params=since)
        assert (
            missing.status_code == 401
            and missing.headers["content-type"] == "application/problem+json"
        )
        assert (await http.get(route, params=since, headers=served.auth())).status_code == 403
        wrong = {"Authorization": f"Bearer {CERTIFIER_KEY[:-1]}x"}
        assert (await http.get(route, params=since, headers=wrong)).status_code == 403
        for bad in ("2026-13-01", "yesterday", "2026-1-01", "２０２６-01-01", ""):
            response = await http.get(route, params={"since": bad}, headers=CERTIFIER)
            assert response.status_code == 422, (bad, response.text)
        assert (
            await http.get(route, params={"since": "x" * 11}, headers=CERTIFIER)
        ).status_code == 422
    key_file = tmp_path / "certifier.key"
    key_file.unlink()  # no key configured: nobody gets in, the former key included
    response = await http.get("/v1/cpf/flux", params=since, headers=CERTIFIER)
    assert response.status_code == 403 and "Aucune clé" in response.json()["detail"]


async def test_a_withdrawn_award_is_reported_and_never_declared_again(
    http: httpx.AsyncClient, served: Registry, tmp_path: Path
) -> None:
    seeded = await seed(http, served)
    old = seeded["ids"]["C1"]
    correction = await http.post(
        "/v1/corrections",
        json={
            "deliberation_id": seeded["deliberation_id"],
            "candidate_number": "C1",
            "bloc": "RNCP40705BC01",
            "grade": "18",
            "reason": "erreur de report de la note sur le procès-verbal",
        },
        headers=served.auth(),
    )
    assert correction.status_code == 201, correction.text
    new = (await http.get("/v1/candidates/C1", headers=served.auth())).json()["cpf_declaration"]
    assert new["id_technique"] != old
    flux = await http.get("/v1/cpf/flux", params={"since": "2026-01-01"}, headers=CERTIFIER)
    declared = id_techniques(validate(flux.content, tmp_path))
    assert new["id_technique"] in declared and old not in declared
    report = (
        await http.get("/v1/cpf/report", params={"since": "2026-01-01"}, headers=CERTIFIER)
    ).json()
    assert [(w["candidate_number"], w["id_technique"]) for w in report["withdrawn"]] == [
        ("C1", old)
    ]


# --- the operator's commands ---------------------------------------------------------------


def run_cli(var_dir: Path, nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CERTIBLOC_VAR_DIR": str(var_dir), "CERTIBLOC_NATS_URL": nats_url}
    return subprocess.run(
        [sys.executable, "-m", "services.registry", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )


def ack_file(path: Path, ok: list[str], ko: dict[str, str], *, capital: bool = False) -> Path:
    """A processing report as the Caisse des Dépôts sends it (see services/registry/cpf/ack.py)."""
    section = "Passages" if capital else "passages"
    oks = "".join(f"<idTechnique>{i}</idTechnique>" for i in ok)
    kos = "".join(
        f"<passage><idTechnique>{i}</idTechnique><messageErreur>{m}</messageErreur></passage>"
        for i, m in ko.items()
    )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ns2:rapport xmlns:ns2="urn:cdc:cpf:pc5:rapport:schema">'
        "<nomFichier>flux.xml</nomFichier><idFlux>certibloc-1</idFlux>"
        f"<idTraitement>51354</idTraitement><{section}KO>{kos}</{section}KO>"
        f"<{section}OK>{oks}</{section}OK></ns2:rapport>",
        encoding="utf-8",
    )
    return path


async def test_the_commands_export_report_gaps_and_import_the_acknowledgement_once(
    http: httpx.AsyncClient, served: Registry, nats_server: NatsServer, tmp_path: Path
) -> None:
    ids = (await seed(http, served))["ids"]
    out = tmp_path / "flux.xml"
    export = run_cli(
        tmp_path / "var", nats_server.url, "export-cpf", "--since", "2026-01-01", "--out", str(out)
    )
    # One award could not be declared: named, with what is missing, and the exit says so.
    assert export.returncode == 1, export.stderr
    assert "C2" in export.stderr and "sex" in export.stderr and "birth_insee_code" in export.stderr
    assert "2 attribution(s) déclarée(s)" in export.stdout and "1 non déclarée(s)" in export.stdout
    assert sorted(id_techniques(validate(out.read_bytes(), tmp_path))) == sorted(
        [ids["C1"], ids["V1"]]
    )
    bad = run_cli(
        tmp_path / "var", nats_server.url, "export-cpf", "--since", "2026-02-30", "--out", str(out)
    )
    assert bad.returncode == 2 and "AAAA-MM-JJ" in bad.stderr

    ack = ack_file(
        tmp_path / "ack.xml",
        ok=[ids["C1"]],
        ko={ids["V1"]: "Aucun titulaire ne correspond aux critères obligatoires", "inconnu-1": "x"},
    )
    first = run_cli(tmp_path / "var", nats_server.url, "import-cpf-ack", str(ack))
    assert first.returncode == 1 and "inconnu-1" in first.stderr  # an id the registry never made
    assert "2 réponse(s) enregistrée(s)" in first.stdout
    c1 = (await http.get("/v1/candidates/C1", headers=served.auth())).json()
    assert c1["cpf_declaration"]["status"] == "acceptée"
    assert c1["history"][-1]["event"] == "CpfOutcomeRecorded"
    v1 = (await http.get("/v1/candidates/V1", headers=served.auth())).json()
    assert v1["cpf_declaration"]["status"] == "rejetée"
    assert v1["cpf_declaration"]["acknowledgements"][0]["message"].startswith("Aucun titulaire")
    assert v1["cpf_declaration"]["acknowledgements"][0]["treatment_id"] == "51354"
    before = served.notification_count()
    # The same report again: nothing new is recorded.
    second = run_cli(tmp_path / "var", nats_server.url, "import-cpf-ack", str(ack))
    assert "0 réponse(s) enregistrée(s), 2 déjà enregistrée(s)" in second.stdout
    assert served.notification_count() == before
    # A later report (the passage deposited again, accepted this time) is recorded.
    later = ack_file(tmp_path / "ack2.xml", ok=[ids["V1"]], ko={}, capital=True)
    later.write_text(later.read_text().replace("51354", "51999"))
    assert run_cli(tmp_path / "var", nats_server.url, "import-cpf-ack", str(later)).returncode == 0
    v1 = (await http.get("/v1/candidates/V1", headers=served.auth())).json()
    assert v1["cpf_declaration"]["status"] == "acceptée"
    assert len(v1["cpf_declaration"]["acknowledgements"]) == 2


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not xml", "pas du XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<r><passagesOK><idTechnique>&x;</idTechnique></passagesOK></r>",
            "DTD",
        ),
        (b"<r><passagesOK/></r>", "sans passage"),
        (
            b"<r><passagesOK><idTechnique>a</idTechnique><idTechnique>a</idTechnique></passagesOK></r>",
            "répété",
        ),
        (
            b"<r><passagesKO><passage><messageErreur>m</messageErreur></passage></passagesKO></r>",
            "idTechnique",
        ),
        (b"<r><passagesOK><idTechnique>" + b"a" * 300 + b"</idTechnique></passagesOK></r>", "255"),
    ],
)
def test_hostile_or_malformed_acknowledgements_are_refused(content: bytes, reason: str) -> None:
    with pytest.raises(cpf_ack.AckError, match=reason):
        cpf_ack.parse(content)


def test_the_acknowledgement_shape_seen_in_the_wild_is_read() -> None:
    parsed = cpf_ack.parse(
        b'<rapport xmlns:ns2="urn:cdc:cpf:pc5:rapport:schema"><idFlux>f</idFlux>'
        b"<idTraitement>7</idTraitement><PassagesKO><passage><idTechnique>b</idTechnique>"
        b"<messageErreur>Plusieurs titulaires ont \xc3\xa9t\xc3\xa9 identifi\xc3\xa9s"
        b"</messageErreur>"
        b"</passage></PassagesKO><PassagesOK><idTechnique>a</idTechnique></PassagesOK></rapport>"
    )
    assert (parsed.flux_id, parsed.treatment_id) == ("f", "7")
    assert [(o.id_technique, o.accepted) for o in parsed.outcomes] == [("b", False), ("a", True)]
    assert parsed.outcomes[0].message == "Plusieurs titulaires ont été identifiés"


async def test_the_demo_candidates_give_a_flux_holding_the_demos_awards(
    served: Registry, nats_server: NatsServer, tmp_path: Path
) -> None:
    """What `make demo` posts (its own code), then `export-cpf`: every award declared."""
    from tools import demo

    def post() -> None:
        with httpx.Client(timeout=60) as client:
            demo.post_sample(client, served.url, served.auth())

    await asyncio.to_thread(post)
    out = tmp_path / "demo-flux.xml"
    done = run_cli(
        tmp_path / "var", nats_server.url, "export-cpf", "--since", "2026-01-01", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "NON DÉCLARÉE" not in done.stderr
    document = validate(out.read_bytes(), tmp_path)
    holders = document.xpath("//cpf:titulaire/cpf:nomNaissance/text()", namespaces=NS)
    awarded = [c.birth_name for c in demo.COHORT if len(c.grades) == len(demo.ALL_BLOCS)]
    assert sorted(map(str, holders)) == sorted(awarded)  # the two diplomas of the demo


async def test_xmllint_accepts_the_flux_too(
    http: httpx.AsyncClient, served: Registry, tmp_path: Path
) -> None:
    """The second, independent validator (libxml2's command line); ``validate`` runs it
    wherever it is installed, this test says so when it is not."""
    xmllint = shutil.which("xmllint")
    if xmllint is None:
        pytest.skip("xmllint absent (Debian/Ubuntu: libxml2-utils); the lxml checks still ran")
    await seed(http, served)
    flux = await http.get("/v1/cpf/flux", params={"since": "2026-01-01"}, headers=CERTIFIER)
    path = tmp_path / "flux.xml"
    path.write_bytes(flux.content)
    done = _xmllint(xmllint, path)
    assert done.returncode == 0 and "validates" in done.stderr, done.stderr
    # And it does refuse what breaks the schema (the check is not vacuous).
    path.write_bytes(flux.content.replace(b"<cpf:sexe>F</cpf:sexe>", b"<cpf:sexe>X</cpf:sexe>"))
    assert _xmllint(xmllint, path).returncode != 0
