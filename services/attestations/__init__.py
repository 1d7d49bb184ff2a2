"""The attestation service: verifiable credentials for acquired blocs and certifications."""
