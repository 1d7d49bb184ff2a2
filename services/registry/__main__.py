"""``python -m services.registry``: serve the API, and the operator's commands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date
from pathlib import Path

from services.registry.settings import RegistrySettings
from services.runtime.cli import ServiceCli

DEMO_CENTER = ("0750001A", "Centre d'examen de démonstration")


CLI = ServiceCli(
    "registry",
    "services.registry.composition:app_factory",
    serve_help="start the HTTP API, the outbox relay included",
)


def main(argv: list[str] | None = None) -> int:
    parser, sub = CLI.parser(__doc__)
    add = sub.add_parser("add-center", help="add an exam center")
    add.add_argument("uai", help="the center's UAI, e.g. 0750001A")
    add.add_argument("name")
    issue = sub.add_parser("issue-key", help="issue an API key for a center (shown once)")
    issue.add_argument("uai")
    revoke = sub.add_parser("revoke-key", help="revoke one of a center's API keys")
    revoke.add_argument("uai")
    revoke.add_argument("key_id", help="the 12-character id printed when the key was issued")
    person = sub.add_parser(
        "person", help="which centers' candidates an INE links (and conflicting claims)"
    )
    person.add_argument("ine")
    demo = sub.add_parser("ensure-demo-center", help="create the demo center and its key file")
    demo.add_argument("--key-file", type=Path, default=None)
    export = sub.add_parser(
        "export-cpf",
        help="write the CPF declaration flux (cpf-1.1.2.xsd) of the awards recorded since DATE",
    )
    export.add_argument("--since", required=True, type=_day, help="YYYY-MM-DD (UTC)")
    export.add_argument("--out", required=True, type=Path)
    ack = sub.add_parser(
        "import-cpf-ack", help="record the Caisse des Dépôts' processing report of a flux"
    )
    ack.add_argument("file", type=Path)
    sub.add_parser(
        "issue-certifier-key",
        help="write a new certifier API key (the CPF routes' key) to REGISTRY_CERTIFIER_KEY_FILE",
    )
    args = parser.parse_args(argv)
    settings = RegistrySettings()
    shared = CLI.run(args, settings)
    if shared is not None:
        return shared

    from services.registry.composition import build_registry
    from services.registry.domain.errors import DomainError

    registry = build_registry(settings)
    try:
        if args.command == "add-center":
            registry.add_center(args.uai, args.name)
            print(f"centre {args.uai.upper()} ajouté")
        elif args.command == "issue-key":
            key = registry.issue_key(args.uai)
            print(f"clé (affichée une seule fois) : {key}")
            print(f"identifiant de la clé : {_key_id(key)}")
        elif args.command == "revoke-key":
            registry.revoke_key(args.uai, args.key_id)
            print(f"clé {args.key_id} révoquée")
        elif args.command == "person":
            found = registry.person(args.ine)
            if found is None:
                print(f"aucun candidat inscrit avec l'INE {args.ine}", file=sys.stderr)
                return 1
            print(json.dumps(found.view(), ensure_ascii=False, indent=2))
        elif args.command == "ensure-demo-center":
            key_file = args.key_file or settings.var_dir / "demo-center.key"
            ensure_demo_center(registry, key_file)
        elif args.command == "export-cpf":
            return export_cpf(registry, settings, args.since, args.out)
        elif args.command == "import-cpf-ack":
            return import_cpf_ack(registry, args.file)
        elif args.command == "issue-certifier-key":
            issue_certifier_key(settings.certifier_key_path)
    except DomainError as error:
        print(error.message, file=sys.stderr)
        return 1
    finally:
        registry.close()
    return 0


def _day(text: str) -> date:
    # fromisoformat alone also takes 20260701 and 2026-W27-1.
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"date attendue (AAAA-MM-JJ) : {text[:20]!r}") from None


def export_cpf(registry: object, settings: RegistrySettings, since: date, out: Path) -> int:
    """Write the flux; 1 when an award could not be declared (each named on stderr)."""
    from services.registry.cpf import declarations

    if settings.cpf_placeholders:
        print(
            "attention : REGISTRY_CPF_CLIENT_ID / REGISTRY_CPF_CONTRACT_ID ne sont pas "
            "renseignés ; le flux porte des identifiants fictifs qu'aucun dépôt n'acceptera",
            file=sys.stderr,
        )
    xml, selection = declarations.export(
        registry, since, client_id=settings.cpf_client_id, contract_id=settings.cpf_contract_id
    )
    for gap in selection.incomplete:
        print(
            f"NON DÉCLARÉE : attribution {gap.id_technique} du candidat {gap.candidate_number} "
            f"(centre {gap.exam_center}) : il manque {', '.join(gap.missing)} ; inscrivez de "
            "nouveau le candidat avec ces champs (POST /v1/candidates) puis relancez l'export",
            file=sys.stderr,
        )
    for gone in selection.withdrawn:
        done = "acceptée par la Caisse des Dépôts" if gone.accepted_by_cdc else "peut-être déposée"
        print(
            f"RETIRÉE : attribution {gone.id_technique} du candidat {gone.candidate_number} "
            f"(centre {gone.exam_center}) retirée le {gone.withdrawn_on}, {done} : le schéma "
            "1.1.2 ne permet pas de la supprimer par flux ; demandez sa suppression sur le "
            "portail des certificateurs",
            file=sys.stderr,
        )
    if xml is None:
        print(f"aucune attribution à déclarer depuis le {since.isoformat()} ; aucun fichier écrit")
    else:
        out.write_bytes(xml)
    print(
        f"{len(selection.passages)} attribution(s) déclarée(s) dans {out if xml else '-'}, "
        f"{len(selection.incomplete)} non déclarée(s) (champs manquants), "
        f"{len(selection.withdrawn)} retirée(s) à signaler"
    )
    return 1 if selection.incomplete else 0


def import_cpf_ack(registry: object, file: Path) -> int:
    """Record each outcome once; 1 when the file names an idTechnique the registry never made."""
    from services.registry.cpf import declarations
    from services.registry.cpf.ack import MAX_BYTES, AckError, parse

    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
        ack = parse(data)
    except OSError as error:
        print(f"lecture impossible de {file} : {error.strerror}", file=sys.stderr)
        return 1
    except AckError as error:
        print(str(error), file=sys.stderr)
        return 1
    result = declarations.record_ack(registry, ack)
    for unknown in result.unknown:
        print(f"idTechnique inconnu du registre : {unknown}", file=sys.stderr)
    print(
        f"{result.recorded} réponse(s) enregistrée(s), {result.already} déjà enregistrée(s), "
        f"{len(result.unknown)} inconnue(s)"
    )
    return 1 if result.unknown else 0


def issue_certifier_key(path: Path) -> None:
    """A new random key in ``path`` (mode 0600), replacing any earlier one: it takes effect at
    the next request, the earlier key stops working."""
    import secrets

    key = "cert_" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(key + "\n")
    print(f"clé du certificateur écrite dans {path} (mode 0600)")


def _key_id(key: str) -> str:
    from contracts.api_keys import digest, key_id

    return key_id(digest(key))


def ensure_demo_center(registry: object, key_file: Path) -> None:
    """Idempotent: the demo center exists and its key is in ``key_file`` (mode 0600)."""
    from services.registry.application import RegistryApp
    from services.registry.domain import ids
    from services.registry.domain.exam_center import ExamCenter

    assert isinstance(registry, RegistryApp)
    uai, name = DEMO_CENTER
    if registry.get_optional(ids.exam_center_id(uai), ExamCenter) is None:
        registry.add_center(uai, name)
    if key_file.exists() and registry.authenticate(key_file.read_text().strip()) == uai:
        print(f"centre de démonstration {uai} : clé dans {key_file}")
        return
    key = registry.issue_key(uai)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600, exist_ok=True)
    key_file.chmod(0o600)
    key_file.write_text(key + "\n")
    print(f"centre de démonstration {uai} : nouvelle clé écrite dans {key_file}")


if __name__ == "__main__":
    sys.exit(main())
