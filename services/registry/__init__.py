"""The registry: the referential, exam centers, candidates, deliberations and VAE decisions."""
