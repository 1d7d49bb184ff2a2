"""Standard Webhooks sending side, checked against a real HTTP receiver that verifies every
delivery with the independent ``standardwebhooks`` reference library."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import statistics
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.notifications import webhooks
from services.notifications.destinations import Destinations, parse_networks, webhook_client
from services.notifications.webhooks import (
    MAX_ATTEMPTS,
    Outcome,
    backoff,
    deliver,
    headers,
    new_secret,
    sign,
    validate_url,
)
from tests.support.processes import ServedApp, free_port

# ---------------------------------------------------------------------------------------------
# The receiver: a Starlette app served by uvicorn on a free loopback port, in a thread.


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False  # hold the request open (past the sender's timeout) until teardown


@dataclass
class Receiver:
    secret: str
    url: str = ""
    replies: dict[str, Reply] = field(default_factory=dict)  # by webhook-id; default 204
    verified: dict[str, list[tuple[Any, dict[str, str]]]] = field(default_factory=dict)
    rejected: dict[str, list[str]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        received = dict(request.headers)
        msg_id = received.get("webhook-id", "")
        try:
            payload = Webhook(self.secret).verify(body, received)
        except WebhookVerificationError as error:
            self.rejected.setdefault(msg_id, []).append(str(error))
            return Response(status_code=401)
        self.verified.setdefault(msg_id, []).append((payload, received))
        reply = self.replies.get(msg_id, Reply())
        if reply.hang:
            await asyncio.to_thread(self.release.wait, 60)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["POST"])])


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver(secret=new_secret())
    with ServedApp(rec.app()) as served:
        rec.url = f"{served.url}/hooks/center-1"
        yield rec
        rec.release.set()


# The receivers listen on loopback: allowed here as NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS would.
LOOPBACK = Destinations(parse_networks("127.0.0.0/8,::1/128"))


async def deliver_here(
    client: httpx.AsyncClient, url: str, secret: str, msg_id: str, body: bytes, **options: Any
) -> Outcome:
    return await deliver(client, url, secret, msg_id, body, destinations=LOOPBACK, **options)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with webhook_client() as http:
        yield http


async def eventually(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``condition`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout}s")


def clock_at(instant: float) -> Callable[[], float]:
    return lambda: instant


def new_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def event_body(**data: Any) -> bytes:
    document = {
        "type": "fr.certibloc.registry.bloc-validated.v1",
        "timestamp": "2026-07-03T10:00:00Z",
        "data": {"candidate_number": "B00042", "given_names": ["Zoé", "Anaïs"], **data},
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# Signing


def test_sign_matches_reference_vector() -> None:
    # The spec page's example signature (v1,K5oZ…) is published without its secret, so the
    # vector is the reference implementation's own (standard-webhooks libraries/python tests).
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize("seed", range(5))
def test_sign_agrees_with_independent_library(seed: int) -> None:
    rng = random.Random(seed)
    secret = new_secret()
    msg_id = new_id()
    timestamp = 1_700_000_000 + rng.randrange(10**8)
    body = event_body(grade=rng.random(), note="é" * rng.randrange(50))
    reference = Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode("utf-8")
    )
    assert sign(secret, msg_id, timestamp, body) == reference


def test_headers_verify_with_independent_library() -> None:
    secret = new_secret()
    body = event_body()
    msg_id = new_id()
    sent = headers(secret, msg_id, int(time.time()), body)
    assert sent["webhook-id"] == msg_id
    assert sent["content-type"] == "application/json"
    assert sent["user-agent"] == "certibloc-webhooks/1"
    assert Webhook(secret).verify(body, sent) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"B00042", b"B00043"), sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, sent)


def test_new_secret_format() -> None:
    secrets_ = {new_secret() for _ in range(50)}
    assert len(secrets_) == 50
    for secret in secrets_:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
        Webhook(secret)  # the reference library accepts it


@pytest.mark.parametrize(
    ("secret", "msg_id"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1"),  # no whsec_ prefix
        ("whsec_not base64!", "msg_1"),
        ("whsec_" + base64.b64encode(b"short").decode(), "msg_1"),  # < 24 bytes
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg.1"),  # "." breaks the signed layout
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ""),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg 1\r\nx: y"),
    ],
)
def test_sign_refuses_bad_input_without_echoing_secret(secret: str, msg_id: str) -> None:
    with pytest.raises(ValueError, match=r".+") as raised:
        sign(secret, msg_id, 1614265330, b"{}")
    assert secret.removeprefix("whsec_") not in str(raised.value)


# ---------------------------------------------------------------------------------------------
# Delivery to a real receiver


async def test_delivery_is_verified_by_receiver(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    msg_id, body, now = new_id(), event_body(), time.time()
    outcome = await deliver_here(
        client, receiver.url, receiver.secret, msg_id, body, now=lambda: now
    )
    assert outcome == Outcome(True, False, 204, outcome.detail)
    [(payload, received)] = receiver.verified[msg_id]
    assert payload == json.loads(body)
    assert received["webhook-timestamp"] == str(int(now))
    assert received["user-agent"] == "certibloc-webhooks/1"
    assert received["content-type"] == "application/json"
    assert msg_id not in receiver.rejected


async def test_retry_keeps_id_and_signs_a_fresh_timestamp(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    msg_id, body, start = new_id(), event_body(), time.time()
    for stamp in (start, start + 65):
        outcome = await deliver_here(
            client, receiver.url, receiver.secret, msg_id, body, now=clock_at(stamp)
        )
        assert outcome.ok
    stamps = [h["webhook-timestamp"] for _, h in receiver.verified[msg_id]]
    assert stamps == [str(int(start)), str(int(start + 65))]


async def test_wrong_secret_fails_receiver_verification(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    msg_id = new_id()
    outcome = await deliver_here(client, receiver.url, new_secret(), msg_id, event_body())
    assert receiver.rejected[msg_id] == ["No matching signature found"]
    assert msg_id not in receiver.verified
    assert (outcome.ok, outcome.retryable, outcome.status) == (False, False, 401)


async def test_tampered_body_fails_receiver_verification(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    msg_id, body = new_id(), event_body(grade=12.5)
    signed = headers(receiver.secret, msg_id, int(time.time()), body)
    tampered = body.replace(b"12.5", b"19.5")
    assert tampered != body
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(tampered, signed)
    async with httpx.AsyncClient() as plain:  # not a delivery: no destination check
        response = await plain.post(receiver.url, content=tampered, headers=signed)
    assert response.status_code == 401
    assert receiver.rejected[msg_id] == ["No matching signature found"]
    assert msg_id not in receiver.verified


async def test_stale_timestamp_fails_receiver_verification(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    msg_id = new_id()
    outcome = await deliver_here(
        client, receiver.url, receiver.secret, msg_id, event_body(), now=lambda: time.time() - 3600
    )
    assert receiver.rejected[msg_id] == ["Message timestamp too old"]
    assert not outcome.ok


# ---------------------------------------------------------------------------------------------
# Outcome classification


@pytest.mark.parametrize(
    ("status", "ok", "retryable"),
    [
        (200, True, False),
        (299, True, False),
        (500, False, True),
        (502, False, True),
        (503, False, True),
        (408, False, True),
        (429, False, True),
        (400, False, False),
        (404, False, False),
        (410, False, False),
    ],
)
async def test_status_classification(
    receiver: Receiver, client: httpx.AsyncClient, status: int, ok: bool, retryable: bool
) -> None:
    msg_id = new_id()
    receiver.replies[msg_id] = Reply(status)
    outcome = await deliver_here(client, receiver.url, receiver.secret, msg_id, event_body())
    assert (outcome.ok, outcome.retryable, outcome.status) == (ok, retryable, status)
    assert str(status) in outcome.detail
    assert receiver.secret.removeprefix("whsec_") not in outcome.detail
    assert len(receiver.verified[msg_id]) == 1


async def test_retry_after_is_reported(receiver: Receiver, client: httpx.AsyncClient) -> None:
    msg_id = new_id()
    receiver.replies[msg_id] = Reply(503, headers={"retry-after": "120"})
    outcome = await deliver_here(client, receiver.url, receiver.secret, msg_id, event_body())
    assert (outcome.retryable, outcome.retry_after) == (True, 120.0)


async def test_redirect_is_not_followed(receiver: Receiver) -> None:
    msg_id = new_id()
    receiver.replies[msg_id] = Reply(307, headers={"location": receiver.url + "/elsewhere"})
    async with webhook_client(follow_redirects=True) as following:
        outcome = await deliver_here(following, receiver.url, receiver.secret, msg_id, event_body())
    assert (outcome.ok, outcome.retryable, outcome.status) == (False, False, 307)
    assert len(receiver.verified[msg_id]) == 1


async def test_large_answer_body_is_not_a_problem(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    msg_id = new_id()
    receiver.replies[msg_id] = Reply(200, body=b"x" * (2 * 1024 * 1024))
    outcome = await deliver_here(client, receiver.url, receiver.secret, msg_id, event_body())
    assert (outcome.ok, outcome.status) == (True, 200)


async def test_timeout_is_retryable(receiver: Receiver, client: httpx.AsyncClient) -> None:
    msg_id = new_id()
    receiver.replies[msg_id] = Reply(hang=True)
    started = time.monotonic()
    outcome = await deliver_here(
        client, receiver.url, receiver.secret, msg_id, event_body(), timeout=0.3
    )
    elapsed = time.monotonic() - started
    assert (outcome.ok, outcome.retryable, outcome.status) == (False, True, None)
    assert elapsed < 5
    await eventually(lambda: receiver.verified.get(msg_id))  # it did arrive, signed correctly


async def test_connection_refused_is_retryable(client: httpx.AsyncClient) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hooks"
    outcome = await deliver_here(client, closed, new_secret(), new_id(), event_body(), timeout=2)
    assert (outcome.ok, outcome.retryable, outcome.status) == (False, True, None)
    assert outcome.detail == "injoignable"  # not "refused": no port scanner


async def test_connection_reset_is_retryable(client: httpx.AsyncClient) -> None:
    requests_seen: list[bytes] = []

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests_seen.append(await reader.read(1024))
        writer.transport.abort()  # close without an answer

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await deliver_here(
            client, f"http://127.0.0.1:{port}/h", new_secret(), new_id(), event_body(), timeout=5
        )
    finally:
        server.close()
        await server.wait_closed()
    assert (outcome.ok, outcome.retryable, outcome.status) == (False, True, None)
    assert requests_seen and requests_seen[0].startswith(b"POST /h ")


async def test_invalid_url_gives_up_without_sending(client: httpx.AsyncClient) -> None:
    outcome = await deliver_here(client, "ftp://127.0.0.1/x", new_secret(), new_id(), b"{}")
    assert (outcome.ok, outcome.retryable, outcome.status) == (False, False, None)


@pytest.mark.parametrize(
    ("secret", "msg_id"),
    [("whsec_tooshort", "msg_1"), ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg.1")],
)
async def test_unusable_secret_or_id_gives_up_without_sending(
    receiver: Receiver, client: httpx.AsyncClient, secret: str, msg_id: str
) -> None:
    outcome = await deliver_here(client, receiver.url, secret, msg_id, event_body())
    assert (outcome.ok, outcome.retryable, outcome.status) == (False, False, None)
    assert msg_id not in receiver.verified and msg_id not in receiver.rejected
    assert "tooshort" not in outcome.detail


# ---------------------------------------------------------------------------------------------
# Back-off


class UpperBound(random.Random):
    """An rng whose uniform(a, b) is b: exposes the jitter ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_ceiling_doubles_then_caps() -> None:
    ceilings = [backoff(n, rng=UpperBound()) for n in range(1, 12)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff(3, base=0.5, cap=1.5, rng=UpperBound()) == 1.5
    assert backoff(10_000, rng=UpperBound()) == 300  # no overflow far out


def test_backoff_is_jittered_within_bounds_and_grows() -> None:
    rng = random.Random(7)
    means = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        ceiling = min(300.0, 2.0 ** (attempt - 1))
        samples = [backoff(attempt, rng=rng) for _ in range(2000)]
        assert all(0 <= s <= ceiling for s in samples)
        assert len(set(samples)) > 1900  # jittered, not a fixed delay
        assert abs(statistics.mean(samples) - ceiling / 2) < ceiling * 0.05  # full jitter
        means.append(statistics.mean(samples))
    assert means == sorted(means)
    assert all(backoff(30, rng=rng) <= 300 for _ in range(1000))


def test_backoff_deterministic_with_seeded_rng() -> None:
    first = [backoff(n, rng=random.Random(42)) for n in range(1, 9)]
    again = [backoff(n, rng=random.Random(42)) for n in range(1, 9)]
    assert first == again
    shared_a, shared_b = random.Random(3), random.Random(3)
    assert [backoff(n, rng=shared_a) for n in range(1, 9)] == [
        backoff(n, rng=shared_b) for n in range(1, 9)
    ]


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff(0)


def test_max_attempts() -> None:
    assert MAX_ATTEMPTS == 8
    assert webhooks.MAX_ATTEMPTS is MAX_ATTEMPTS


# ---------------------------------------------------------------------------------------------
# Endpoint URLs


@pytest.mark.parametrize(
    "url",
    [
        "https://ecole.example.fr/webhooks/certibloc",
        "https://ecole.example.fr:8443/hooks?source=certibloc",
        "http://127.0.0.1:8080/hooks",  # well formed: where it points is checked apart
        "http://localhost/hooks",
        "http://10.1.2.3/hooks",
        "http://[::1]:9000/hooks",
        "HTTPS://ECOLE.EXAMPLE.FR/",
        "https://" + "a" * 40 + ".fr/" + "p" * (2048 - 8 - 40 - 4),  # exactly 2048 characters
    ],
)
def test_validate_url_accepts(url: str) -> None:
    assert len(url) <= 2048
    assert validate_url(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "vide"),
        ("ftp://ecole.example.fr/hooks", "https://"),
        ("file:///etc/passwd", "https://"),
        ("javascript:alert(1)", "https://"),
        ("ecole.example.fr/hooks", "https://"),
        ("https:///hooks", "hôte"),
        ("https://", "hôte"),
        ("https://alice:s3cr3t@ecole.example.fr/hooks", "identifiants"),
        ("https://token@ecole.example.fr/hooks", "identifiants"),
        ("https://ecole.example.fr/" + "p" * 2048, "2048"),
        ("https://ecole.example.fr/a b", "espace"),
        ("https://ecole.example.fr/\r\nX-Injected: 1", "espace"),
        ("https://ecole.example.fr:99999/", "port"),
        ("https://ecole.example.fr:0/", "port"),
        ("https://[::1/hooks", "mal formée"),
    ],
)
def test_validate_url_refuses(url: str, reason: str) -> None:
    message = validate_url(url)
    assert message is not None and reason in message
    assert "s3cr3t" not in message
