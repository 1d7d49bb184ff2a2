"""The Caisse des Dépôts' processing report (*accusé de traitement*) of a deposited flux.

cpf-1.1.2.xsd does not define it. What certifiers receive (namespace
``urn:cdc:cpf:pc5:rapport:schema``) looks like::

    <rapport xmlns="urn:cdc:cpf:pc5:rapport:schema">
      <nomFichier>…xml</nomFichier> <idFlux>…</idFlux> <idTraitement>51354</idTraitement>
      <passagesKO>
        <passage><idTechnique>…</idTechnique><messageErreur>…</messageErreur></passage>
      </passagesKO>
      <passagesOK><idTechnique>…</idTechnique>…</passagesOK>
    </rapport>

The minimal shape accepted here: any root; ``passagesOK`` / ``passagesKO`` sections (any case,
any namespace or none: reports seen in the wild write ``PassagesOK``); in an OK section each
``idTechnique`` (directly or inside a ``passage``); in a KO section one ``passage`` per
rejection with its ``idTechnique`` and ``messageErreur`` (several messages are joined);
``idFlux`` and ``idTraitement`` where present. Parsed without DTD, entities or network, and
bounded (``MAX_BYTES``, ``MAX_PASSAGES``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from services.registry.cpf.flux import safe_parser

MAX_BYTES = 64 * 1024 * 1024  # a 200,000-passage report is ~40 MB
MAX_PASSAGES = 200_000  # the CDC's own limit per deposited file
ID_MAX = 255  # idTechnique's maxLength in the flux schema
MESSAGE_MAX = 500


class AckError(ValueError):
    """The file is not a processing report this command can read (message in French)."""


@dataclass(frozen=True)
class Outcome:
    id_technique: str
    accepted: bool
    message: str | None


@dataclass(frozen=True)
class Ack:
    flux_id: str | None
    treatment_id: str | None
    outcomes: list[Outcome]


def parse(data: bytes) -> Ack:
    if len(data) > MAX_BYTES:
        raise AckError(f"Compte rendu trop grand (plus de {MAX_BYTES // (1024 * 1024)} Mo).")
    if b"<!DOCTYPE" in data[:4096].upper() or b"<!ENTITY" in data.upper():
        raise AckError("Compte rendu refusé : DTD et entités ne sont pas acceptées.")
    try:
        root = etree.fromstring(data, parser=safe_parser())
    except etree.XMLSyntaxError as error:
        raise AckError(f"Compte rendu illisible : ce n'est pas du XML ({error.msg}).") from None
    outcomes: list[Outcome] = []
    for section in root.iter(etree.Element):
        name = _local(section)
        if name == "passagesok":
            outcomes += [
                Outcome(_id(node), True, None)
                for node in section.iter(etree.Element)
                if _local(node) == "idtechnique"
            ]
        elif name == "passagesko":
            for passage in section:
                if not isinstance(passage.tag, str) or _local(passage) != "passage":
                    continue
                ids = [n for n in passage.iter(etree.Element) if _local(n) == "idtechnique"]
                messages = [
                    (n.text or "").strip()
                    for n in passage.iter(etree.Element)
                    if _local(n) == "messageerreur"
                ]
                if len(ids) != 1:
                    raise AckError("Compte rendu refusé : un passage KO sans idTechnique unique.")
                message = " ; ".join(m for m in messages if m)[:MESSAGE_MAX] or "rejeté"
                outcomes.append(Outcome(_id(ids[0]), False, message))
        if len(outcomes) > MAX_PASSAGES:
            raise AckError(f"Compte rendu refusé : plus de {MAX_PASSAGES} passages.")
    if not outcomes:
        raise AckError("Compte rendu sans passage : ni passagesOK ni passagesKO.")
    seen: set[str] = set()
    for outcome in outcomes:
        if outcome.id_technique in seen:
            raise AckError(f"Compte rendu refusé : idTechnique {outcome.id_technique} répété.")
        seen.add(outcome.id_technique)
    return Ack(_text(root, "idflux"), _text(root, "idtraitement"), outcomes)


def _local(node: etree._Element) -> str:
    return str(etree.QName(node).localname).lower()


def _id(node: etree._Element) -> str:
    value = (node.text or "").strip()
    if not 1 <= len(value) <= ID_MAX:
        raise AckError(f"Compte rendu refusé : idTechnique vide ou de plus de {ID_MAX} caractères.")
    return value


def _text(root: etree._Element, name: str) -> str | None:
    for node in root.iter(etree.Element):
        if _local(node) == name and node.getparent() is root:
            return (node.text or "").strip()[:ID_MAX] or None
    return None
