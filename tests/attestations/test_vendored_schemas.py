"""The JSON Schemas the service validates credentials with are the published ones, unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.attestations.verification import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = ROOT.parent / "shared" / "standards"


@pytest.mark.parametrize("name", SCHEMAS)
def test_vendored_schema_matches_the_specification_copy(name: str) -> None:
    assert STANDARDS.is_dir(), f"missing {STANDARDS}: the shared standards must sit beside the repo"
    vendored = ROOT / "services" / "attestations" / "schemas" / name
    assert vendored.read_bytes() == (STANDARDS / name).read_bytes()
