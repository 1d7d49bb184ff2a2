"""Pure domain logic of the registry: no I/O here."""
