"""Stream and subject names on NATS JetStream: one stream per producing service, and one
dead-letter stream per consuming service.

Dead letters are operational copies, not events of the contract: a consumer that cannot
accept a message (not a CloudEvent, a source other than the stream's producer, data that does
not fit its type's model) terminates it and copies it, with the reason in its headers, to
``certibloc.deadletter.<consumer service>.<durable consumer>`` on its own dead-letter stream.
"""

from __future__ import annotations

from functools import cache

EVENT_TYPE_PREFIX = "fr.certibloc"
SUBJECT_PREFIX = "certibloc"
DEADLETTER_PREFIX = f"{SUBJECT_PREFIX}.deadletter"

# Producing service -> JetStream stream name.
STREAMS: dict[str, str] = {
    "registry": "CERTIBLOC_REGISTRY",
    "attestations": "CERTIBLOC_ATTESTATIONS",
    "notifications": "CERTIBLOC_NOTIFICATIONS",
}

# Consuming service -> (producing service, durable consumer name) of each stream it reads.
# The composition roots build their consumers from this, and the bus's permissions let each
# service use exactly these consumers (services.runtime.natsauth).
CONSUMERS: dict[str, tuple[tuple[str, str], ...]] = {
    "registry": (),
    "attestations": (("registry", "attestations"),),
    "notifications": (("registry", "notifications-registry"), ("attestations", "notifications")),
}


def durable_of(service: str, producer: str) -> str:
    """The durable consumer ``service`` reads ``producer``'s stream with."""
    for upstream, durable in CONSUMERS[service]:
        if upstream == producer:
            return durable
    raise KeyError(f"{service} does not consume {producer}'s stream")


def event_type(service: str, event: str, version: int) -> str:
    return f"{EVENT_TYPE_PREFIX}.{service}.{event}.v{version}"


@cache
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


def deadletter_stream(service: str) -> str:
    """The dead-letter stream of a consuming service: ``CERTIBLOC_ATTESTATIONS_DEADLETTER``."""
    return f"{SUBJECT_PREFIX.upper()}_{service.upper()}_DEADLETTER"


def deadletter_subjects(service: str) -> list[str]:
    return [f"{DEADLETTER_PREFIX}.{service}.>"]


def deadletter_subject(service: str, durable: str) -> str:
    return f"{DEADLETTER_PREFIX}.{service}.{durable}"
