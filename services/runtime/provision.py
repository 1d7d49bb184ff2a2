"""Provisioning of the bus: every stream and durable consumer the contracts name (one durable
per consuming service, stream and partition), created (or aligned) by one step that runs
before the services, with a key of its own.

The services themselves may not create or change a stream: a stream's configuration can
source another stream or capture another service's subjects, which subject permissions
cannot see into (a service allowed to update its own stream could copy another's dead
letters, or its replies, into it). So the services only read their streams' state and bind
to the consumers provisioned for them (``services.runtime.natsauth``), and this step — with
the ``provisioner`` key, which may create and update exactly these streams and consumers and
delete nothing — runs first: ``make run`` runs it as NATS comes up, the tests when they start
a server, deploy/ as a one-shot job (Compose service, Kubernetes Job).

``python -m services.runtime.provision`` (settings from the environment like a service's:
``CERTIBLOC_NATS_URL``, ``CERTIBLOC_NATS_CREDENTIALS_DIR`` holding ``provisioner.nk``,
``CERTIBLOC_NATS_REPLICAS``, ``CERTIBLOC_NATS_MAX_PAYLOAD``, ``CERTIBLOC_NATS_TLS_CA_FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext
from tenacity import AsyncRetrying, RetryCallState, stop_after_delay, wait_exponential

from contracts.subjects import CONSUMERS, STREAMS, durable_for, partition_subjects
from services.runtime.nats import connect, ensure_consumer, ensure_deadletter_stream, ensure_stream
from services.runtime.natsauth import PROVISIONER, inbox_prefix
from services.runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

ACK_WAIT = 5.0  # seconds a consumer holds a message before it is delivered again
MAX_ACK_PENDING = 2000  # messages out at once per consumer: 4 batches of 500


@dataclass(frozen=True)
class Topology:
    replicas: int = 1
    max_msg_size: int = 1024 * 1024
    partitions: int = 1
    ack_wait: float = ACK_WAIT
    max_ack_pending: int = MAX_ACK_PENDING


async def provision(js: JetStreamContext, topology: Topology = Topology()) -> None:
    """Every producing service's stream, every consuming service's dead-letter stream and
    every durable consumer of ``contracts.subjects.CONSUMERS``. Safe to run again."""
    for service, stream in STREAMS.items():
        await ensure_stream(
            js, stream, service, topology.replicas, max_msg_size=topology.max_msg_size
        )
    for service, consumes in CONSUMERS.items():
        if consumes:
            await ensure_deadletter_stream(js, service, topology.replicas)
        for producer, base in consumes:
            for partition in range(topology.partitions):
                await ensure_consumer(
                    js,
                    STREAMS[producer],
                    durable_for(base, partition, topology.partitions),
                    ack_wait=topology.ack_wait,
                    max_ack_pending=topology.max_ack_pending,
                    filter_subject=partition_subjects(producer, partition)
                    if topology.partitions > 1
                    else None,
                )


async def run(settings: ServiceSettings, wait: float) -> None:
    """Provision, retrying for ``wait`` seconds: a cluster that has just started answers
    connections before its JetStream has a leader (API calls time out or get a 503)."""
    topology = Topology(
        replicas=settings.nats_stream_replicas,
        max_msg_size=settings.nats_max_payload,
        partitions=settings.partitions,
    )
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(wait),
        wait=wait_exponential(multiplier=0.1, max=1),
        reraise=True,
        before_sleep=_say_waiting,
    ):
        with attempt:
            nc = await connect(
                settings.nats_url,
                "provisioner",
                seed_file=settings.nats_seed_file,
                inbox_prefix=inbox_prefix(PROVISIONER),
                tls_ca_file=settings.nats_tls_ca_file,
            )
            try:
                await provision(nc.jetstream(), topology)
            finally:
                await nc.close()


def _say_waiting(state: RetryCallState) -> None:
    """The Job's log says why it waits (and tests wait for that line, not for a delay)."""
    error = state.outcome.exception() if state.outcome is not None else None
    print(f"NATS not ready ({type(error).__name__}); retrying", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.runtime.provision", description=__doc__
    )
    parser.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for NATS to answer"
    )
    args = parser.parse_args(argv)
    settings = ServiceSettings(service_name=PROVISIONER)
    asyncio.run(run(settings, args.wait))
    print(f"streams and consumers provisioned on {settings.nats_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
