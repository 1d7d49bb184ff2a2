"""HTTP edge of the registry: requests in, application commands, problem+json out."""
