"""Stream and subject names on NATS JetStream: one stream per producing service."""

from __future__ import annotations

EVENT_TYPE_PREFIX = "fr.certibloc"
SUBJECT_PREFIX = "certibloc"

# Producing service -> JetStream stream name.
STREAMS: dict[str, str] = {
    "registry": "CERTIBLOC_REGISTRY",
    "attestations": "CERTIBLOC_ATTESTATIONS",
    "notifications": "CERTIBLOC_NOTIFICATIONS",
}


def event_type(service: str, event: str, version: int) -> str:
    return f"{EVENT_TYPE_PREFIX}.{service}.{event}.v{version}"


def subject_for(event_type_name: str) -> str:
    """``fr.certibloc.registry.bloc-validated.v1`` -> ``certibloc.registry.bloc-validated.v1``."""
    prefix = EVENT_TYPE_PREFIX + "."
    if not event_type_name.startswith(prefix):
        raise ValueError(f"not a certibloc event type: {event_type_name}")
    return SUBJECT_PREFIX + "." + event_type_name[len(prefix) :]


def stream_subjects(service: str) -> list[str]:
    return [f"{SUBJECT_PREFIX}.{service}.>"]


def source_for(service: str) -> str:
    return f"/certibloc/{service}"
