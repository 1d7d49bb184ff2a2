"""The CPF *accrochage* flux (cpf-1.1.2.xsd, namespace ``urn:cdc:cpf:pc5:schema:1.0.0``).

One flux: one ``emetteur`` (the certifier, ``idClient``), one ``certificateur`` (its
``idClient`` and ``idContrat``, both given by the Caisse des Dépôts), one ``certification`` per
certification code, one ``passageCertification`` per award of the whole certification.

What the schema has no place for: bloc-level declarations. A ``passageCertification`` names a
certification (``type`` + ``code``) and nothing below it, so acquired blocs are not declared;
only awards of the whole certification are (by exam or by VAE). Nor can 1.1.2 withdraw a
passage (1.1.5 adds ``cpf:action`` SUPPRESSION): withdrawn awards are reported, never exported.

Every flux is validated against the schema before it is handed out: an invalid one is a bug
here, never a file for the certifier to deposit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

NS = "urn:cdc:cpf:pc5:schema:1.0.0"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_FILE = Path(__file__).with_name("cpf-1.1.2.xsd")
NAME_MAX = 60  # nomNaissance, nomUsage, prenom1..3: 60 characters (ours: 100)

# access_route (contracts.registry_v1.AccessRoute) -> cpf:modaliteAcces
ACCESS = {
    "formation_initiale": "FORMATION_INITIALE_HORS_APPRENTISSAGE",
    "apprentissage": "FORMATION_INITIALE_APPRENTISSAGE",
    "formation_continue": "FORMATION_CONTINUE_HORS_CONTRAT_DE_PROFESSIONNALISATION",
    "contrat_professionnalisation": "FORMATION_CONTINUE_CONTRAT_DE_PROFESSIONNALISATION",
    "candidature_individuelle": "CANDIDAT_LIBRE",
    "vae": "VAE",
}
# The referential's mention codes -> cpf:mention. An exam award without a mention is
# SANS_MENTION; a VAE award has no average, hence no mention at all (nil).
MENTIONS = {
    None: "SANS_MENTION",
    "assez_bien": "MENTION_ASSEZ_BIEN",
    "bien": "MENTION_BIEN",
    "tres_bien": "MENTION_TRES_BIEN",
    "tres_bien_felicitations": "MENTION_TRES_BIEN_AVEC_FELICITATIONS_DU_JURY",
}


@dataclass(frozen=True)
class Holder:
    birth_name: str
    usage_name: str | None
    given_names: Sequence[str]
    birth_date: str  # YYYY-MM-DD
    sex: str | None
    birth_insee_code: str | None
    birth_postal_code: str | None
    birth_country_code: str | None


@dataclass(frozen=True)
class Passage:
    """One award to declare."""

    id_technique: str  # the award id: stable across exports
    certification: str
    awarded_on: str  # YYYY-MM-DD: the jury's decision, start of validity
    via: str  # exam | vae
    mention: str | None
    access_route: str
    holder: Holder


def missing_fields(holder: Holder) -> list[str]:
    """What the schema requires of a holder that this one lacks (or has in a form it refuses)."""
    missing = []
    if holder.sex not in ("M", "F"):
        missing.append("sex")
    if not (holder.birth_insee_code or holder.birth_postal_code):
        missing.append("birth_insee_code")
    for field, value in (
        ("birth_name", holder.birth_name),
        ("usage_name", holder.usage_name or ""),
        *((f"given_names[{i}]", n) for i, n in enumerate(holder.given_names[:3])),
    ):
        if len(value) > NAME_MAX:
            missing.append(f"{field} (plus de {NAME_MAX} caractères)")
    return missing


def certification_type(code: str) -> str:
    """``RNCP12345`` -> ``RNCP``, ``RS5875`` -> ``RS``: the register the code belongs to."""
    found = re.match(r"[A-Z]+", code)
    return found.group(0) if found else code


def build(
    passages: Sequence[Passage],
    *,
    flux_id: str,
    client_id: str,
    contract_id: str,
    at: datetime,
) -> bytes:
    """The flux for ``passages`` (at least one; each holder complete), schema-checked."""
    if not passages:
        raise ValueError("a flux holds at least one passage")
    root = etree.Element(f"{{{NS}}}flux", nsmap={"cpf": NS, "xsi": XSI})
    el(root, "idFlux", flux_id)
    el(root, "horodatage", at.replace(microsecond=0).isoformat())
    emetteur = el(root, "emetteur")
    el(emetteur, "idClient", client_id)
    certificateur = el(el(emetteur, "certificateurs"), "certificateur")
    el(certificateur, "idClient", client_id)
    el(certificateur, "idContrat", contract_id)
    certifications = el(certificateur, "certifications")
    by_code: dict[str, list[Passage]] = {}
    for passage in passages:
        by_code.setdefault(passage.certification, []).append(passage)
    for code, its in by_code.items():
        certification = el(certifications, "certification")
        el(certification, "type", certification_type(code))
        el(certification, "code", code)
        el(certification, "natureDeposant", "CERTIFICATEUR")
        listed = el(certification, "passageCertifications")
        for p in its:
            _passage(el(listed, "passageCertification"), p)
    xml: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    problems = schema_errors(xml)
    if problems:
        raise ValueError("flux CPF non conforme au schéma : " + " ; ".join(problems[:5]))
    return xml


def el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{NS}}}{name}")
    if text is not None:
        child.text = text
    return child


def nil(parent: etree._Element, name: str) -> None:
    el(parent, name).set(f"{{{XSI}}}nil", "true")


def _passage(node: etree._Element, p: Passage) -> None:
    add = el
    h = p.holder
    add(node, "idTechnique", p.id_technique)
    add(node, "obtentionCertification", "PAR_ADMISSION")
    add(node, "donneeCertifiee", "true")  # the certifier itself declares what its jury decided
    add(node, "dateDebutValidite", p.awarded_on[:10])
    nil(node, "dateFinValidite")  # a diploma does not expire
    add(node, "presenceNiveauLangueEuro", "false")
    add(node, "presenceNiveauNumeriqueEuro", "false")
    nil(node, "scoring")  # PAR_ADMISSION: no score
    mention = MENTIONS.get(p.mention) if p.via == "exam" else None
    if mention is None:
        nil(node, "mentionValidee")
    else:
        add(node, "mentionValidee", mention)
    inscription = add(node, "modalitesInscription")
    add(inscription, "modaliteAcces", "VAE" if p.via == "vae" else ACCESS[p.access_route])
    titulaire = add(add(node, "identificationTitulaire"), "titulaire")
    add(titulaire, "nomNaissance", h.birth_name)
    if h.usage_name:
        add(titulaire, "nomUsage", h.usage_name)
    else:
        nil(titulaire, "nomUsage")
    for i, given in enumerate(h.given_names[:3], start=1):
        add(titulaire, f"prenom{i}", given)
    year, month, day = h.birth_date[:10].split("-")
    add(titulaire, "anneeNaissance", str(int(year)))
    add(titulaire, "moisNaissance", str(int(month)))
    add(titulaire, "jourNaissance", str(int(day)))
    add(titulaire, "sexe", h.sex)
    commune = add(titulaire, "codeCommuneNaissance")
    if h.birth_insee_code:
        add(add(commune, "codeInseeNaissance"), "codeInsee", h.birth_insee_code)
    else:
        add(add(commune, "codePostalNaissance"), "codePostal", h.birth_postal_code)
    if h.birth_country_code:
        add(titulaire, "codePaysNaissance", h.birth_country_code)


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_FILE)))


def schema_errors(xml: bytes) -> list[str]:
    """The schema's objections to ``xml`` (empty: valid)."""
    document = etree.fromstring(xml, parser=safe_parser())
    checker = schema()
    if checker.validate(document):
        return []
    entries: list[Any] = list(checker.error_log)  # type: ignore[call-overload]
    return [f"ligne {e.line} : {e.message}" for e in entries]


def safe_parser() -> etree.XMLParser:
    """No DTD, no entities, no network: a file from outside cannot make us read anything."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
