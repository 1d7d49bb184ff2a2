"""``python -m services.registry``: serve the API, and the operator's commands."""

from __future__ import annotations

import json
import sys
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
    except DomainError as error:
        print(error.message, file=sys.stderr)
        return 1
    finally:
        registry.close()
    return 0


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
