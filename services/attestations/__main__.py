"""``python -m services.attestations``: serve the API (consumer and relay included), and the
operator's commands."""

from __future__ import annotations

import json
import re
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
    verify.add_argument(
        "--pdf-cert",
        type=Path,
        default=None,
        help="the service's PDF signing certificate (PEM), to check a PDF's PAdES signature "
        "(default: this service's own, under its keys directory)",
    )
    links = sub.add_parser(
        "revoke-links",
        help="invalidate every personal download link of a candidate (published: the running "
        "service's relay sends it on)",
    )
    links.add_argument("--center", required=True, help="the exam center's UAI")
    links.add_argument("--candidate", required=True, help="the candidate number")
    links.add_argument(
        "--send-new-links", action="store_true", help="e-mail the candidate new links"
    )
    args = parser.parse_args(argv)
    settings = AttestationsSettings()
    shared = CLI.run(args, settings)
    if shared is not None:
        return shared
    if args.command == "verify":
        from services.attestations.pdf import SIGNER_FILE

        own = settings.signing_keys_dir / "pdf" / SIGNER_FILE  # its certificate is read alone
        return verify_offline(args.credential, args.jwks, args.pdf_cert or own)
    if args.command == "revoke-links":
        return revoke_links(settings, args.center, args.candidate, args.send_new_links)

    from services.attestations.identity import did_web
    from services.attestations.keys import KeyStore

    store = KeyStore(settings.signing_keys_dir, did=did_web(settings.public_base_url.rstrip("/")))
    if args.command == "rotate-key":
        key = store.rotate()
        print(f"nouvelle clé active : {key.kid} (les anciennes restent publiées)")
    elif args.command == "keys":
        active = store.active_kid() if (store.directory / "active").exists() else None
        for key in store.all_keys():
            print(f"{key.kid}{'  (active)' if key.kid == active else ''}")
    return 0


def revoke_links(
    settings: AttestationsSettings, center: str, candidate: str, send_new_links: bool
) -> int:
    from services.attestations.composition import build_attestations

    app, _ = build_attestations(settings)
    try:
        epoch = app.revoke_links(center, candidate, by="operator", send_new_links=send_new_links)
    finally:
        app.close()
    if epoch is None:
        print(f"candidat {candidate} inconnu pour le centre {center}", file=sys.stderr)
        return 2
    print(
        f"liens personnels de {center}/{candidate} révoqués"
        + (" ; un e-mail avec de nouveaux liens va partir" if send_new_links else "")
    )
    return 0


def verify_offline(path: Path, jwks_path: Path, pdf_cert: Path | None) -> int:
    """Signature, key and schema checks without any network (and, for a PDF, its PAdES
    signature against the service's PDF certificate); status needs the issuer."""
    from pyhanko.keys import load_certs_from_pemder_data

    from services.attestations.pdf_inspection import inspect_pdf
    from services.attestations.verification import check_credential, check_pdf

    data = path.read_bytes()
    jwks = json.loads(jwks_path.read_text())
    if data.startswith(b"%PDF"):
        if pdf_cert is None or not pdf_cert.exists():
            print(
                "un PDF se vérifie avec le certificat PDF du service : --pdf-cert FICHIER.pem",
                file=sys.stderr,
            )
            return 2
        # The certificate alone (a PEM file may hold the private key too: it is not read).
        found = re.search(
            rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pdf_cert.read_bytes(), re.S
        )
        if found is None:
            print(f"{pdf_cert} : aucun certificat PEM", file=sys.stderr)
            return 2
        trusted = next(iter(load_certs_from_pemder_data(found.group(0))))
        report = check_pdf(inspect_pdf(data, trusted), jwks, status_lookup=None)
    else:
        report = check_credential(data.decode().strip(), jwks, status_lookup=None)
    for check in report.checks:
        print(f"{'ok ' if check.ok else 'ÉCHEC'}  {check.name:<11} {check.detail}")
    shown = report.as_json()
    if shown.get("holder") and shown.get("achievement"):
        achievement = shown["achievement"]
        print(
            f"titulaire : {shown['holder']['name']} — {achievement['code']} "
            f"« {achievement['title']} » : comparez avec le document présenté"
        )
    ok = all(c.ok for c in report.checks)
    print(
        "justificatif authentique (statut de révocation non vérifié hors ligne)"
        if ok
        else "justificatif NON valide"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
