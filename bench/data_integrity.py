"""What the Data Integrity form costs per credential, next to the JWS issuance signs:

    python -m bench.data_integrity     # prints the costs, as JSON (milliseconds, one thread)

On the 5 kB bloc credential of ``bench.signing``: ``jws_ms`` (``jose.sign``, what issuance
does), ``canonize_ms`` (RDFC-1.0 of the document alone), ``sign_ms`` (``data_integrity.add_proof``:
both canonicalizations, two SHA-256, Ed25519) and ``verify_ms`` (``data_integrity.verify``).
Each is the median of five rounds of 50. Why the form is made on request and cached
(``services/attestations/data_integrity_forms.py``) rather than at issuance.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

from bench.signing import sample_credential
from services.attestations.domain import data_integrity as di
from services.attestations.domain.jose import SigningKey, sign

ROUNDS, PER_ROUND = 5, 50


def _ms(operation: Callable[[], object]) -> float:
    operation()  # contexts loaded and processed once
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(PER_ROUND):
            operation()
        rounds.append((time.perf_counter() - start) / PER_ROUND * 1000)
    return round(statistics.median(rounds), 3)


def costs() -> dict[str, float]:
    key = SigningKey.generate("did:web:attestations.example.org#bench")
    credential = sample_credential()
    secured = di.add_proof(credential, key, created=credential["validFrom"])
    public = {key.kid: key.private_key.public_key()}.get
    return {
        "quads": float(len(di.loader().canonize(credential).splitlines())),
        "jws_ms": _ms(lambda: sign(credential, key)),
        "canonize_ms": _ms(lambda: di.loader().canonize(credential)),
        "sign_ms": _ms(lambda: di.add_proof(credential, key, created=credential["validFrom"])),
        "verify_ms": _ms(lambda: di.verify(secured, public)),
    }


if __name__ == "__main__":
    print(json.dumps(costs(), indent=2))
