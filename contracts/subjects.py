"""Stream and subject names on NATS JetStream: one stream per producing service, divided in
partitions, and one dead-letter stream per consuming service.

A stream's subjects carry a partition derived from the candidate (``partition_of``):
``certibloc.<service>.p<partition>.<event>.v<N>``. Everything about one candidate is in one
partition, in order, on every stream (the same key and the same count everywhere), so each
partition is an independent lane: its own ``previous`` chain, its own durable consumer per
consuming service (``<durable>-p<partition>``), its own replica to apply it. The count is a
deployment setting (``CERTIBLOC_PARTITIONS``), fixed for a deployment's life: changing it
moves candidates between partitions (drain the streams first).

Dead letters are operational copies, not events of the contract: a consumer that cannot
accept a message (not a CloudEvent, a source other than the stream's producer, data that does
not fit its type's model) terminates it and copies it, with the reason in its headers, to
``certibloc.deadletter.<consumer service>.<durable consumer>`` on its own dead-letter stream.
"""

from __future__ import annotations

import zlib
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


MAX_PARTITIONS = 256


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` (``candidate_key``, or an exam center's UAI): CRC-32, stable
    across processes and versions, unlike ``hash()``."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be 1 to {MAX_PARTITIONS}")
    return zlib.crc32(key.encode()) % partitions


def candidate_key(exam_center: str, candidate_number: str) -> str:
    """What a candidate's partition is derived from (numbers are unique per center)."""
    return f"{exam_center}/{candidate_number}"


@cache
def subject_for(event_type_name: str, partition: int = 0) -> str:
    """``fr.certibloc.registry.decision-recorded.v1``, partition 3 ->
    ``certibloc.registry.p3.decision-recorded.v1``."""
    prefix = EVENT_TYPE_PREFIX + "."
    if not event_type_name.startswith(prefix):
        raise ValueError(f"not a certibloc event type: {event_type_name}")
    service, rest = event_type_name[len(prefix) :].split(".", 1)
    return f"{SUBJECT_PREFIX}.{service}.p{partition}.{rest}"


def partition_in(subject: str) -> int | None:
    """The partition a subject names, or None if it names none."""
    parts = subject.split(".")
    if len(parts) < 4 or not parts[2].startswith("p") or not parts[2][1:].isdigit():
        return None
    return int(parts[2][1:])


def stream_subjects(service: str) -> list[str]:
    return [f"{SUBJECT_PREFIX}.{service}.>"]


def partition_subjects(service: str, partition: int) -> str:
    """What a partition's durable consumer filters on."""
    return f"{SUBJECT_PREFIX}.{service}.p{partition}.>"


def durable_for(base: str, partition: int, partitions: int) -> str:
    """``attestations``, 3 -> ``attestations-p3``: the durable consumer of one partition. With
    a single partition the names are those of before partitions (``attestations``)."""
    return base if partitions == 1 else f"{base}-p{partition}"


def lane(name: str, partition: int, partitions: int) -> str:
    """The name of one partition's chain in a tracking table (``registry``, 3 ->
    ``registry:p3``); with a single partition, the name alone, as before partitions."""
    return name if partitions == 1 else f"{name}:p{partition}"


def source_for(service: str) -> str:
    return f"/certibloc/{service}"


def deadletter_stream(service: str) -> str:
    """The dead-letter stream of a consuming service: ``CERTIBLOC_ATTESTATIONS_DEADLETTER``."""
    return f"{SUBJECT_PREFIX.upper()}_{service.upper()}_DEADLETTER"


def deadletter_subjects(service: str) -> list[str]:
    return [f"{DEADLETTER_PREFIX}.{service}.>"]


def deadletter_subject(service: str, durable: str) -> str:
    return f"{DEADLETTER_PREFIX}.{service}.{durable}"
