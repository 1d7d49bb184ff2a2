-- One schema per service in the certibloc database: a service writes only to its own
-- (<SERVICE>_POSTGRES_SCHEMA); eventsourcing creates its tables there on first start.
-- Compose runs this once, on an empty data directory (/docker-entrypoint-initdb.d/). Elsewhere:
--   psql -v ON_ERROR_STOP=1 -U certibloc -d certibloc -f deploy/postgres/init-schemas.sql
CREATE SCHEMA IF NOT EXISTS registry;
CREATE SCHEMA IF NOT EXISTS attestations;
CREATE SCHEMA IF NOT EXISTS notifications;
