"""``make demo``: post a sample jury deliberation to the system ``make run`` started, as the demo
exam center, and print the verification URLs of the attestations it produced.

Safe to run again: the candidates and the PV (same Idempotency-Key) are recorded once, and the
same URLs are printed.

    python -m tools.demo [--timeout 60]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.attestations.settings import AttestationsSettings
from services.notifications.settings import NotificationsSettings
from services.notifications.sink import message_count
from services.registry.settings import RegistrySettings

JURY = {
    "members": [
        {"name": "Mme Claire Leroy", "role": "teacher_public", "present": True},
        {"name": "M. Karim Benali", "role": "teacher_private", "present": True},
        {"name": "Mme Sophie Petit", "role": "employer", "present": True},
        {"name": "M. Julien Moreau", "role": "employee", "present": True},
    ]
}
ALL_BLOCS = [f"RNCP40705BC{i:02d}" for i in range(1, 13)]


@dataclass(frozen=True)
class Candidate:
    number: str
    given_names: list[str]
    birth_name: str
    access_route: str
    grades: dict[str, str]  # bloc -> grade, in the PV
    expected: int  # attestations the policy gives for these results
    # What the CPF declaration needs (sex, birth commune's INSEE code, birth country): so that
    # `export-cpf` after `make demo` declares the demo's awards.
    sex: str = "F"
    birth_insee_code: str = "75056"
    birth_country_code: str = "100"

    def body(self) -> dict[str, Any]:
        return {
            "candidate_number": self.number,
            "birth_name": self.birth_name,
            "given_names": self.given_names,
            "birth_date": "1990-04-17",
            "email": _ascii(f"{self.given_names[0]}.{self.birth_name}@example.org".lower()),
            "certification": "RNCP40705",
            "access_route": self.access_route,
            "candidate_group": 1 if self.access_route != "vae" else 3,
            "sex": self.sex,
            "birth_insee_code": self.birth_insee_code,
            "birth_country_code": self.birth_country_code,
        }


COHORT = [
    # Continuing education, every bloc passed: 12 bloc attestations and the diploma's.
    Candidate("DEMO0001", ["Léa"], "Martin", "formation_continue",
              dict.fromkeys(ALL_BLOCS, "13,5"), 13),
    # Apprenticeship: the policy gives the diploma's attestation only.
    Candidate("DEMO0002", ["Hugo"], "Bernard", "apprentissage",
              dict.fromkeys(ALL_BLOCS, "12"), 1, sex="M", birth_insee_code="69123"),
    # Continuing education, four blocs passed and one failed: four bloc attestations.
    Candidate("DEMO0003", ["Chloé"], "Petit", "formation_continue",
              {**dict.fromkeys(ALL_BLOCS[:4], "11"), ALL_BLOCS[4]: "8,5"}, 4,
              birth_insee_code="13055"),
]  # fmt: skip
# Born in Morocco: the INSEE code of a birth abroad is 99 + the country's code.
VAE = Candidate(
    "DEMO0004", ["Nadia"], "Haddad", "vae", {}, 2, birth_insee_code="99350",
    birth_country_code="350",
)  # fmt: skip
VAE_BLOCS = ["RNCP40705BC02", "RNCP40705BC03"]


def _ascii(text: str) -> str:
    """léa -> lea: a plain address every mail server takes."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    registry = RegistrySettings()
    attestations = AttestationsSettings()
    notifications = NotificationsSettings()
    key_file = registry.var_dir / "demo-center.key"
    if not key_file.exists():
        print(f"{key_file} introuvable : lancez d'abord `make run`.", file=sys.stderr)
        return 1
    auth = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
    reg_url = f"http://{registry.host}:{registry.port}"
    att_url = f"http://{attestations.host}:{attestations.port}"
    with httpx.Client(timeout=30) as http:
        try:
            post_sample(http, reg_url, auth)
        except httpx.TransportError as error:
            print(f"registre injoignable sur {reg_url} ({error}) : `make run` tourne-t-il ?")
            return 1
        try:
            found = wait_for_attestations(http, att_url, auth, args.timeout)
        except httpx.TransportError as error:
            print(f"service d'attestations injoignable sur {att_url} ({error})")
            return 1
    # One e-mail per candidate and decision (the PV decides for the cohort, the VAE jury for
    # its candidate), listing every attestation it issued.
    mails = wait_for_mails(notifications.sink_dir, len([*COHORT, VAE]), args.timeout)
    print_report(found, notifications.sink_dir, mails)
    missing = [c.number for c in [*COHORT, VAE] if len(found.get(c.number, [])) < c.expected]
    if missing:
        print(f"attestations manquantes après {args.timeout:.0f} s : {', '.join(missing)}")
        return 1
    return 0


def post_sample(http: httpx.Client, registry: str, auth: dict[str, str]) -> None:
    for person in [*COHORT, VAE]:
        r = http.post(f"{registry}/v1/candidates", json=person.body(), headers=auth)
        _ok(r, f"inscription de {person.number}")
    lines = [
        {"candidate_number": c.number, "bloc": bloc, "grade": grade}
        for c in COHORT
        for bloc, grade in c.grades.items()
    ]
    pv = {
        "certification": "RNCP40705",
        "session": "2026-06",
        "deliberated_on": "2026-07-03",
        "jury": JURY,
        "lines": lines,
    }
    r = http.post(
        f"{registry}/v1/deliberations",
        json=pv,
        headers={**auth, "Idempotency-Key": "demo-pv-2026-06"},
    )
    _ok(r, "procès-verbal")
    decision = {
        "candidate_number": VAE.number,
        "certification": "RNCP40705",
        "decided_on": "2026-06-20",
        "jury": JURY,
        "decision": "partielle",
        "blocs": VAE_BLOCS,
    }
    r = http.post(
        f"{registry}/v1/vae-decisions",
        json=decision,
        headers={**auth, "Idempotency-Key": "demo-vae-2026-06"},
    )
    _ok(r, "décision de VAE")


def _ok(response: httpx.Response, what: str) -> None:
    if response.status_code not in (200, 201):
        raise SystemExit(f"{what} refusé ({response.status_code}) : {response.text}")


def wait_for_attestations(
    http: httpx.Client, attestations: str, auth: dict[str, str], timeout: float
) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + timeout
    found: dict[str, list[dict[str, Any]]] = {}
    while True:
        for person in [*COHORT, VAE]:
            r = http.get(
                f"{attestations}/v1/attestations",
                params={"candidate_number": person.number},
                headers=auth,
            )
            if r.status_code == 200:
                found[person.number] = r.json()["attestations"]
        if all(len(found.get(c.number, [])) >= c.expected for c in [*COHORT, VAE]):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def wait_for_mails(directory: Path, expected: int, timeout: float) -> int:
    """E-mails in the dev sink's folder, once there are ``expected`` (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        count = message_count(directory) if directory.exists() else 0
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.25)


_SPACE_LINK = re.compile(r"https?://\S+/space\?token=[A-Za-z0-9._~%-]+")


def space_links(mail_dir: Path) -> dict[str, str]:
    """Each recipient's personal-space link, as the newest e-mail they were sent gives it."""
    links: dict[str, tuple[float, str]] = {}
    for path in mail_dir.glob("*.eml") if mail_dir.exists() else ():
        with path.open("rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        found = _SPACE_LINK.search(body.get_content()) if body is not None else None
        to = str(message["To"] or "")
        when = path.stat().st_mtime
        if found and (to not in links or links[to][0] < when):
            links[to] = (when, found.group(0))
    return {to: link for to, (_, link) in links.items()}


def print_report(found: dict[str, list[dict[str, Any]]], mail_dir: Path, mails: int) -> None:
    everyone = [*COHORT, VAE]
    names = {c.number: f"{' '.join(c.given_names)} {c.birth_name}" for c in everyone}
    emails = {c.number: c.body()["email"] for c in everyone}
    spaces = space_links(mail_dir)
    for number, items in found.items():
        print(f"\n{names[number]} ({number}) — {len(items)} attestation(s)")
        for a in sorted(items, key=lambda a: (a["kind"] != "certification", a["code"])):
            print(f"  {a['code']:<15} {a['verify_url']}")
        space = next((link for to, link in spaces.items() if emails[number] in to), None)
        if space:
            print(f"  espace personnel (lien de son e-mail) : {space}")
    print("\nOuvrez une adresse /v/… dans un navigateur pour voir la page de vérification,")
    print("et l'espace personnel d'un candidat : relevé, liens de partage (QR code).")
    print(f"{mails} e-mail(s) aux candidats, avec leur lien de téléchargement, dans {mail_dir}/.")
    print(
        "Déclaration CPF des diplômes attribués : .venv/bin/python -m services.registry "
        "export-cpf --since 2026-01-01 --out var/cpf-flux.xml"
    )


if __name__ == "__main__":
    sys.exit(main())
