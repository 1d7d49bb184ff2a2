"""Exactly one e-mail per candidate decision when the notifications service is killed with
SIGKILL mid-batch and restarted, and when two replicas run side by side."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from services.notifications.sink import message_count, start_sink
from tests.attestations.harness import Attestations, serve_attestations
from tests.notifications.harness import SECRET
from tests.registry.harness import Registry, post_cohort, serve_registry
from tests.support.processes import NatsServer, ServiceProcess, free_port

CANDIDATES = 240
BLOCS = 5
# One e-mail per candidate, listing the candidate's five attestations.
EXPECTED = CANDIDATES


@contextmanager
def upstream(tmp: Path, nats_url: str) -> Iterator[tuple[Registry, Attestations]]:
    with (
        serve_registry(tmp / "registry", nats_url) as registry,
        serve_attestations(
            tmp / "attestations", nats_url, download_token_secret=SecretStr(SECRET)
        ) as attestations,
    ):
        yield registry, attestations


def notifications_process(
    tmp: Path, nats_url: str, att_url: str, smtp_port: int, name: str
) -> ServiceProcess:
    port = free_port()
    env = {
        "CERTIBLOC_VAR_DIR": str(tmp / "notifications"),
        "CERTIBLOC_NATS_URL": nats_url,
        "CERTIBLOC_DOWNLOAD_TOKEN_SECRET": SECRET,
        "CERTIBLOC_LOG_LEVEL": "WARNING",
        "NOTIFICATIONS_PORT": str(port),
        "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
        "NOTIFICATIONS_ATTESTATIONS_URL": att_url,
        "NOTIFICATIONS_CLAIM_TIMEOUT": "2",
        "NOTIFICATIONS_DISPATCH_CONCURRENCY": "16",
    }
    return ServiceProcess("services.notifications", port, env, tmp / f"{name}.log")


async def post_pv(registry: Registry) -> None:
    await post_cohort(registry.url, registry.auth(), "X", CANDIDATES, BLOCS)


async def wait_files(directory: Path, count: int, timeout: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (n := message_count(directory)) < count:
        assert loop.time() < deadline, f"only {n} of {count} messages"
        await asyncio.sleep(0.01)
    return n


def distinct_deliveries(directory: Path) -> set[str]:
    keys = set()
    for path in directory.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        keys.add(str(message["X-Certibloc-Delivery-Key"]))
    return keys


async def test_sigkill_mid_batch_then_restart_sends_each_mail_once(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    mail_dir = tmp_path / "mail"
    controller, smtp_port = start_sink(mail_dir)
    try:
        with upstream(tmp_path, nats_server.url) as (registry, att):
            service = notifications_process(tmp_path, nats_server.url, att.url, smtp_port, "n1")
            service.start()
            try:
                await post_pv(registry)
                await wait_files(mail_dir, EXPECTED // 5, timeout=60)
                service.kill()
                killed_at = message_count(mail_dir)
                assert killed_at < EXPECTED, "everything was sent before the kill"
                service.start()
                await wait_files(mail_dir, EXPECTED, timeout=90)
                # Let any late duplicate show up before counting.
                await asyncio.sleep(0)
            finally:
                service.stop()
        assert message_count(mail_dir) == EXPECTED
        assert len(distinct_deliveries(mail_dir)) == EXPECTED
        # Messages in flight at the kill may have been transmitted again under the same
        # Message-ID (recognised and stored once); never more than those in flight.
        assert EXPECTED <= controller.handler.received <= EXPECTED + 16
    finally:
        controller.stop()


async def test_two_replicas_send_each_mail_exactly_once(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    mail_dir = tmp_path / "mail"
    controller, smtp_port = start_sink(mail_dir)
    try:
        with upstream(tmp_path, nats_server.url) as (registry, att):
            a = notifications_process(tmp_path, nats_server.url, att.url, smtp_port, "a")
            b = notifications_process(tmp_path, nats_server.url, att.url, smtp_port, "b")
            a.start()
            b.start()
            try:
                await post_pv(registry)
                await wait_files(mail_dir, EXPECTED, timeout=90)
            finally:
                a.stop()
                b.stop()
        assert message_count(mail_dir) == EXPECTED
        assert controller.handler.received == EXPECTED  # no crash: not one resend
    finally:
        controller.stop()
