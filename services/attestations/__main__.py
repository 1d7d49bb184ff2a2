"""``python -m services.attestations``: serve the API (consumer and relay included), and the
operator's commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from services.attestations.settings import AttestationsSettings
from services.runtime.cli import ServiceCli
from services.runtime.consumer import ConsumerSpec
from services.runtime.settings import ServiceSettings
from services.runtime.store import ServiceApplication


def _build(settings: ServiceSettings) -> tuple[ServiceApplication, Sequence[ConsumerSpec]]:
    from services.attestations.composition import build_attestations, consumers

    assert isinstance(settings, AttestationsSettings)
    app, _ = build_attestations(settings)
    return app, consumers(app)


CLI = ServiceCli(
    "attestations",
    "services.attestations.composition:app_factory",
    serve_help="start the HTTP API, the registry consumer and the relay",
    build=_build,
)


def main(argv: list[str] | None = None) -> int:
    parser, sub = CLI.parser(__doc__)
    sub.add_parser("rotate-key", help="create a new signing key and make it the active one")
    sub.add_parser("keys", help="list the signing keys (kid; the active one is marked)")
    verify = sub.add_parser("verify", help="check a credential file offline against a JWKS file")
    verify.add_argument("credential", type=Path, help="a .vc.jwt file, or a PDF attestation")
    verify.add_argument("--jwks", type=Path, required=True, help="the issuer's saved jwks.json")
    args = parser.parse_args(argv)
    settings = AttestationsSettings()
    shared = CLI.run(args, settings)
    if shared is not None:
        return shared
    if args.command == "verify":
        return verify_offline(args.credential, args.jwks)

    from services.attestations.keys import KeyStore

    store = KeyStore(settings.signing_keys_dir)
    if args.command == "rotate-key":
        key = store.rotate()
        print(f"nouvelle clé active : {key.kid} (les anciennes restent publiées)")
    elif args.command == "keys":
        active = store.active_kid() if (store.directory / "active").exists() else None
        for key in store.all_keys():
            print(f"{key.kid}{'  (active)' if key.kid == active else ''}")
    return 0


def verify_offline(path: Path, jwks_path: Path) -> int:
    """Signature, key and schema checks without any network; status needs the issuer."""
    from services.attestations.pdf import embedded_credential
    from services.attestations.verification import check_credential

    data = path.read_bytes()
    token = embedded_credential(data) if data.startswith(b"%PDF") else data.decode().strip()
    if token is None:
        print("aucun justificatif dans ce PDF", file=sys.stderr)
        return 2
    report = check_credential(token, json.loads(jwks_path.read_text()), status_lookup=None)
    for check in report.checks:
        print(f"{'ok ' if check.ok else 'ÉCHEC'}  {check.name:<11} {check.detail}")
    ok = all(c.ok for c in report.checks)
    print(
        "justificatif authentique (statut de révocation non vérifié hors ligne)"
        if ok
        else "justificatif NON valide"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
