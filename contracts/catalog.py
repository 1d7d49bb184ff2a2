"""Every published event type, by producing service: what a consumer parses a message into.

A consumer of a stream looks the message's ``type`` up in its producer's catalog: a known type
is parsed into its model; a type the catalog does not hold (a later version, a new event) is
skipped as forward-compatible.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from contracts import attestations_v1, notifications_v1, notifications_v2, registry_v1
from contracts.events import ContractEvent

# Producing service -> the event models it publishes, in declaration order.
PUBLISHED: Mapping[str, tuple[type[ContractEvent], ...]] = MappingProxyType(
    {
        "registry": registry_v1.EVENTS,
        "attestations": attestations_v1.EVENTS,
        "notifications": notifications_v2.EVENTS,
    }
)
# No longer published; their schemas stay committed, for reading streams written before.
# A consumer meets them as types its producer's catalog does not hold: skipped.
RETIRED: Mapping[str, tuple[type[ContractEvent], ...]] = MappingProxyType(
    {
        "registry": registry_v1.RETIRED,
        "attestations": attestations_v1.RETIRED,
        "notifications": notifications_v1.RETIRED,
    }
)


@cache
def events_of(service: str) -> Mapping[str, type[ContractEvent]]:
    """``type`` -> model of every event ``service`` publishes."""
    models = PUBLISHED[service]
    catalog = {model.event_type(): model for model in models}
    if len(catalog) != len(models):
        raise ValueError(f"{service} declares an event type twice")
    for name, model in catalog.items():
        if service != model.SERVICE:
            raise ValueError(f"{name} is listed for {service} but declares {model.SERVICE}")
    return MappingProxyType(catalog)
