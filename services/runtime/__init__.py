"""What every certibloc service does the same way: settings, event store, outbox relay,
JetStream consumer, HTTP app factory and logging. One place, used by all services."""
