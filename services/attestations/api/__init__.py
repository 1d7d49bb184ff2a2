"""HTTP edge of the attestations service."""
