"""The JSON Schemas the service validates credentials with are the published ones, unchanged.

The digests are those of the files as published (tests/data/standards/SOURCES.md names the
sources); a schema edited by hand, or replaced by another version, fails here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.attestations.verification import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED_SHA256 = {
    "vc2_verifiable-credential-schema.json": (
        "8a3fa1948fb37d9ca7fd30d602549c9e8d59feb361beed6edb05e9711d10e83a"
    ),
    "ob_v3p0_achievementcredential_schema.json": (
        "5753fb3ecf7d024ed273dd364bd683f483eb47257e718e6618832cf89eb2083a"
    ),
}


@pytest.mark.parametrize("name", SCHEMAS)
def test_vendored_schema_is_the_published_file(name: str) -> None:
    vendored = ROOT / "services" / "attestations" / "schemas" / name
    assert hashlib.sha256(vendored.read_bytes()).hexdigest() == PUBLISHED_SHA256[name]
