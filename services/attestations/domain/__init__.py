"""Pure domain logic of the attestation service: no I/O here."""
