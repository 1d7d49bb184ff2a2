"""One core's Ed25519 signing rate on a 5 kB credential: the yardstick of the end-to-end rate.

    python -m bench.signing            # prints both rates, as JSON

The credential is what the attestations service issues for a bloc of RNCP40705 (built by
``services.attestations.domain.credential``, with a bloc's real title and competences), its
description lengthened until the JWS payload is 5,000 bytes. Two rates, each the median of
five one-second rounds on this thread:

- ``ed25519_per_second``: the Ed25519 signature alone over that signing input (the floor no
  implementation goes under);
- ``jws_per_second``: what issuing does per credential, ``jose.sign`` (JSON, base64url and
  the signature).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from contracts.referential import load_certification
from services.attestations.domain import credential as vc
from services.attestations.domain.jose import SigningKey, sign

CREDENTIAL_BYTES = 5_000
ROUNDS = 5


def sample_credential(size: int = CREDENTIAL_BYTES) -> dict[str, Any]:
    certification = load_certification("RNCP40705")
    bloc = certification.blocs[0]
    credential = vc.build_credential(
        attestation_id="q3B8zJ0b1vYkq2d9mXhT4w",
        verify_url="https://attestations.example.org/v/q3B8zJ0b1vYkq2d9mXhT4w",
        issuer=vc.IssuerProfile(
            id="did:web:attestations.example.org",
            name="Ministère de l'Éducation nationale",
            siret="11004301500012",
            url="https://attestations.example.org",
        ),
        holder=vc.Holder(given_names=("Léa", "Marie"), family_name="Martin", birth_name=None),
        achievement=vc.AchievementInfo(
            code=bloc.code,
            title=bloc.title,
            kind="bloc",
            competences=tuple(bloc.competences),
            certification_code=certification.code,
            certification_title=certification.title,
            level=4,
        ),
        valid_from=datetime(2026, 7, 3, 10, 0, tzinfo=UTC),
        status=vc.StatusEntry(
            list_url="https://attestations.example.org/v1/status-lists/1", index=4242
        ),
    )
    missing = size - len(json.dumps(credential, ensure_ascii=False).encode())
    if missing > 0:
        credential["description"] += " " + "x" * (missing - 1)
    return credential


def _rate(operation: Callable[[], object]) -> float:
    rounds = []
    for _ in range(ROUNDS):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < 1.0:
            for _ in range(100):
                operation()
            count += 100
        rounds.append(count / elapsed)
    return statistics.median(rounds)


def signing_rates() -> dict[str, float]:
    key = SigningKey.generate("bench")
    credential = sample_credential()
    token = sign(credential, key)
    signing_input = token.rsplit(".", 1)[0].encode("ascii")
    return {
        "credential_bytes": float(len(json.dumps(credential, ensure_ascii=False).encode())),
        "ed25519_per_second": round(_rate(lambda: key.private_key.sign(signing_input))),
        "jws_per_second": round(_rate(lambda: sign(credential, key))),
    }


if __name__ == "__main__":
    print(json.dumps(signing_rates()))
