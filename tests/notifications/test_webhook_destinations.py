"""Webhook destinations (issue 10, item 1): every refused class of address, proved without
sending it any traffic — the policy on addresses, the check on URLs with an injected resolver
(or literal addresses, or numeric forms the system resolver reads without DNS), registration
over real HTTP against the running service, and deliveries that connect only to the address
that was checked (no second resolution), with TLS still naming the URL's host."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from services.notifications.api import HTTPS_REQUIRED, NOT_ALLOWED
from services.notifications.destinations import (
    Destinations,
    HttpsRequired,
    PinnedBackend,
    Refused,
    parse_networks,
    refusal,
    system_resolver,
    webhook_client,
)
from services.notifications.webhooks import deliver, new_secret, public_detail
from tests.attestations.test_service import until
from tests.notifications.harness import LOOPBACK_NETWORKS, serve_all
from tests.notifications.test_webhooks import Receiver, event_body, new_id
from tests.registry.harness import candidate, full_lines, pv
from tests.support.processes import NatsServer, ServedApp

LOOPBACK = parse_networks(LOOPBACK_NETWORKS)
HOST = "hooks.centre.test"  # .test never resolves (RFC 2606): only our resolver answers it

# One example per refused class, and the class the policy must name.
REFUSED: list[tuple[str, str]] = [
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not a binding
    ("0.1.2.3", "this-network"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "cgnat"),
    ("100.100.100.200", "cgnat"),  # Alibaba Cloud metadata
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),  # AWS, GCP, Azure metadata
    ("169.254.0.1", "link-local"),
    ("192.0.0.192", "ietf-protocol"),  # Oracle Cloud metadata
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmark"),
    ("198.19.255.255", "benchmark"),
    ("192.88.99.1", "6to4-relay"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "ipv4-mapped"),
    ("::ffff:169.254.169.254", "ipv4-mapped"),
    ("::ffff:8.8.8.8", "ipv4-mapped"),  # never in a public destination's DNS
    ("::ffff:0:a00:1", "ipv4-translated"),
    ("::10.0.0.1", "ipv4-compatible"),
    ("64:ff9b::7f00:1", "nat64:loopback"),
    ("64:ff9b::a9fe:a9fe", "nat64:link-local"),
    ("64:ff9b::a00:1", "nat64:private"),
    ("64:ff9b:1::1", "nat64-local"),
    ("2002:a00:1::1", "6to4:private"),
    ("2002:7f00:1::", "6to4:loopback"),
    ("2002:a9fe:a9fe::1", "6to4:link-local"),
    ("2001:0:808:808:0:0:f5ff:fffe", "teredo:private"),  # client 10.0.0.1 (obfuscated)
    ("2001:0:a00:1:0:0:f7f7:f7f7", "teredo:private"),  # server 10.0.0.1
    ("100::1", "discard"),
    ("2001:2::1", "benchmark"),
    ("2001:10::1", "orchid"),
    ("2001:20::1", "orchid"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("fc00::1", "unique-local"),
    ("fd00:ec2::254", "unique-local"),  # AWS metadata over IPv6
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff05::2", "multicast"),
    ("4000::1", "reserved"),
    ("5f00::1", "reserved"),
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just outside 100.64/10
    "100.128.0.0",
    "172.15.255.255",  # just outside 172.16/12
    "172.32.0.0",
    "192.169.0.1",
    "198.20.0.1",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4007:80f::200e",
    "64:ff9b::808:808",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of a public address
    "2001:0:808:808:0:0:f7f7:f7f7",  # Teredo, server and client public
]


@pytest.mark.parametrize(("text", "expected"), REFUSED)
def test_policy_refuses_each_class(text: str, expected: str) -> None:
    assert refusal(ipaddress.ip_address(text)) == expected


@pytest.mark.parametrize("text", PUBLIC)
def test_policy_accepts_public_addresses(text: str) -> None:
    assert refusal(ipaddress.ip_address(text)) is None


# ---------------------------------------------------------------------------------------------
# The check on URLs: one resolution, every address judged; no traffic at all.


@dataclass
class FakeDNS:
    """A resolver answering from a table; each host's answers in turn (the last repeats)."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def answer(self, host: str, *addresses: str) -> None:
        self.answers[host] = [list(addresses)]

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        turn = sum(1 for h in self.asked if h == host)
        self.asked.append(host)
        found = self.answers.get(host)
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return found[min(turn, len(found) - 1)]


async def test_a_name_with_any_refused_address_is_refused() -> None:
    dns = FakeDNS()
    dns.answer(HOST, "93.184.215.14", "2606:4700:4700::1111", "10.0.0.1")
    with pytest.raises(Refused, match=r"10\.0\.0\.1"):
        await Destinations(resolver=dns).check(f"https://{HOST}/hooks")
    assert dns.asked == [HOST]


@pytest.mark.parametrize(("text", "expected"), REFUSED)
async def test_every_class_is_refused_behind_a_name_and_as_a_literal(
    text: str, expected: str
) -> None:
    dns = FakeDNS()
    dns.answer(HOST, text)
    with pytest.raises(Refused, match=expected):
        await Destinations(resolver=dns).check(f"https://{HOST}/hooks")
    literal = f"[{text}]" if ":" in text else text
    with pytest.raises(Refused, match=expected):
        await Destinations(resolver=dns).check(f"https://{literal}/hooks")
    assert dns.asked == [HOST]  # a literal address is not resolved


async def test_https_is_required_outside_the_allowed_networks() -> None:
    dns = FakeDNS()
    dns.answer(HOST, "93.184.215.14")
    destinations = Destinations(resolver=dns)
    with pytest.raises(HttpsRequired):
        await destinations.check(f"http://{HOST}/hooks")
    checked = await destinations.check(f"https://{HOST}/hooks")
    assert (checked.host, checked.port, checked.addresses) == (HOST, 443, ("93.184.215.14",))


async def test_the_allowed_networks_let_refused_addresses_through_over_http() -> None:
    dns = FakeDNS()
    dns.answer("intranet.test", "10.1.2.3", "10.1.2.4")
    destinations = Destinations(parse_networks("10.1.0.0/16"), resolver=dns)
    checked = await destinations.check("http://intranet.test:8080/hooks")
    assert checked.addresses == ("10.1.2.3", "10.1.2.4") and checked.port == 8080
    dns.answer("intranet.test", "10.1.2.3", "10.2.0.1")  # one outside: refused
    with pytest.raises(Refused, match=r"10\.2\.0\.1"):
        await destinations.check("http://intranet.test:8080/hooks")
    with pytest.raises(Refused, match="ipv4-mapped"):  # a v4 network does not allow v6 forms
        await destinations.check("http://[::ffff:10.1.2.3]/hooks")


@pytest.mark.parametrize(
    "url",
    [
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://METADATA.google.internal./computeMetadata/v1/",
        "http://metadata/latest",
        "https://metadata.goog/",
        "http://instance-data/latest/meta-data/",
    ],
)
async def test_metadata_names_are_refused_before_any_resolution(url: str) -> None:
    dns = FakeDNS()
    with pytest.raises(Refused, match="metadata"):
        await Destinations(LOOPBACK, resolver=dns).check(url)
    assert dns.asked == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://0177.0.0.1/", "malformed"),  # httpx refuses this spelling outright
        ("http://localhost/", "loopback"),
    ],
)
async def test_numeric_spellings_of_loopback_are_refused(url: str, reason: str) -> None:
    # The system resolver reads these without a DNS query (inet_aton, /etc/hosts).
    with pytest.raises(Refused, match=reason):
        await Destinations(resolver=system_resolver).check(url)


async def test_unresolvable_and_slow_names_are_refused() -> None:
    with pytest.raises(Refused, match="does not resolve"):
        await Destinations(resolver=FakeDNS()).check(f"https://{HOST}/")

    async def never(host: str, port: int) -> Sequence[str]:
        await asyncio.Event().wait()
        return []

    with pytest.raises(Refused, match="timed out"):
        await Destinations(resolver=never, resolve_timeout=0.1).check(f"https://{HOST}/")


# ---------------------------------------------------------------------------------------------
# Deliveries connect to the checked address only.


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver(secret=new_secret())
    with ServedApp(rec.app()) as served:
        rec.url = served.url
        yield rec
        rec.release.set()


def port_of(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


async def test_delivery_goes_to_the_pinned_address_with_one_resolution(
    receiver: Receiver,
) -> None:
    port = port_of(receiver.url)
    dns = FakeDNS({HOST: [["127.0.0.1"], ["127.0.0.2"]]})  # a rebinding answer comes second
    connects: list[tuple[str, int]] = []
    destinations = Destinations(LOOPBACK, resolver=dns)
    msg_id = new_id()
    async with webhook_client(backend=PinnedBackend(lambda a, p: connects.append((a, p)))) as c:
        outcome = await deliver(
            c, f"http://{HOST}:{port}/h", receiver.secret, msg_id, event_body(),
            destinations=destinations,
        )  # fmt: skip
    assert (outcome.ok, outcome.status, outcome.detail) == (True, 204, "livré (HTTP 204)")
    assert dns.asked == [HOST]  # one resolution; the system resolver would not know .test
    assert connects == [("127.0.0.1", port)]
    [(_, received)] = receiver.verified[msg_id]
    assert received["host"] == f"{HOST}:{port}"  # the URL's host, not the address


async def test_the_delivery_client_connects_nowhere_unchecked(receiver: Receiver) -> None:
    before = sum(len(v) for v in receiver.verified.values())
    async with webhook_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(receiver.url + "/h", content=b"{}")
    assert sum(len(v) for v in receiver.verified.values()) == before


async def test_delivery_time_refusal_connects_nothing() -> None:
    dns = FakeDNS({HOST: [["10.0.0.7"]]})  # rebound to an internal address since registration
    connects: list[tuple[str, int]] = []
    async with webhook_client(backend=PinnedBackend(lambda a, p: connects.append((a, p)))) as c:
        outcome = await deliver(
            c, f"http://{HOST}:8080/h", new_secret(), new_id(), b"{}",
            destinations=Destinations(LOOPBACK, resolver=dns),
        )  # fmt: skip
    assert (outcome.ok, outcome.retryable, outcome.status) == (False, True, None)
    assert outcome.detail == "injoignable"
    assert connects == [] and dns.asked == [HOST]


@dataclass
class TlsReceiver:
    """A bare HTTPS endpoint on loopback: records the SNI it was asked for, answers 204."""

    context: ssl.SSLContext
    names: list[str | None] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def tls_receiver(cert_for: str) -> tuple[TlsReceiver, asyncio.Server, ssl.SSLContext]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_for).configure_cert(server_context)
    tls = TlsReceiver(server_context)
    server_context.sni_callback = lambda sock, name, ctx: tls.names.append(name)  # type: ignore[func-returns-value]
    server = await asyncio.start_server(tls.serve, "127.0.0.1", 0, ssl=server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return tls, server, client_context


@pytest.mark.parametrize(("cert_for", "delivered"), [(HOST, True), ("someone-else.test", False)])
async def test_tls_names_the_url_host_while_connecting_to_the_pinned_address(
    cert_for: str, delivered: bool
) -> None:
    tls, server, trust = await tls_receiver(cert_for)
    port = server.sockets[0].getsockname()[1]
    dns = FakeDNS({HOST: [["127.0.0.1"]]})
    try:
        async with webhook_client(ssl_context=trust) as client:
            outcome = await deliver(
                client, f"https://{HOST}:{port}/h", new_secret(), new_id(), b"{}",
                destinations=Destinations(LOOPBACK, resolver=dns),
            )  # fmt: skip
    finally:
        server.close()
        await server.wait_closed()
    assert tls.names == [HOST]  # SNI: the host name, although we connected to 127.0.0.1
    assert outcome.ok is delivered
    if delivered:
        assert tls.requests[0].startswith(b"POST /h ")
    else:  # a certificate for another name: nothing sent, and the center sees no TLS detail
        assert tls.requests == [] and outcome.detail == "injoignable"


@pytest.mark.parametrize(
    ("recorded", "shown"),
    [
        ("HTTP 204 : livré (delivered)", "livré (HTTP 204)"),
        ("HTTP 503 : erreur du destinataire, nouvel essai (server error, will retry)",
         "refusé par le destinataire (HTTP 503)"),
        ("HTTP 307 : redirection non suivie ; abandon", "refusé par le destinataire (HTTP 307)"),
        ("pas de réponse en 5 s, nouvel essai (timed out, will retry)", "injoignable"),
        ("connexion impossible (refusée ou injoignable), nouvel essai", "injoignable"),
        ("connexion interrompue par le destinataire, nouvel essai", "injoignable"),
        ("erreur interne : ConnectError", "injoignable"),
        ("refusé par le destinataire (HTTP 404)", "refusé par le destinataire (HTTP 404)"),
        ("injoignable", "injoignable"),
    ],
)  # fmt: skip
def test_recorded_details_are_shown_coarse(recorded: str, shown: str) -> None:
    # Attempts recorded before outcomes were coarse are shown coarse too.
    assert public_detail(recorded) == shown


# ---------------------------------------------------------------------------------------------
# Against the running service, over HTTP.


def problem_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == 422
    return body


async def test_registration_refuses_every_internal_destination(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    dns = FakeDNS()
    refused_urls = [
        "http://127.0.0.1:8250/varz",  # the issue's probe: NATS monitoring under make run
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8101/v1/certifications",
        "https://[fd00:ec2::254]/latest/meta-data/",
        "https://[::ffff:127.0.0.1]:5432/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://2130706433:8102/",
        "https://nowhere.centre.test/hooks",  # does not resolve: the same answer
    ]
    for i, (address, _) in enumerate(REFUSED):
        dns.answer(f"c{i}.centre.test", address)
        refused_urls.append(f"https://c{i}.centre.test/hooks")
    dns.answer("mixed.centre.test", "93.184.215.14", "10.0.0.1")
    refused_urls.append("https://mixed.centre.test/hooks")
    dns.answer("public.centre.test", "93.184.215.14")
    connects: list[tuple[str, int]] = []

    with serve_all(tmp_path, nats_server.url, webhook_allowed_networks="", resolver=dns) as (
        registry,
        _,
        notes,
    ):
        notes.destinations.on_connect = lambda a, p: connects.append((a, p))
        async with httpx.AsyncClient(timeout=30) as http:
            auth = registry.auth()
            for url in refused_urls:
                r = await http.post(f"{notes.url}/v1/webhooks", headers=auth, json={"url": url})
                body = problem_of(r)
                assert body["detail"] == NOT_ALLOWED, (url, body)
                for internal in ("127.0.0.1", "169.254", "10.0.0.1", "8250", "::1", "loopback"):
                    assert internal not in r.text, (url, r.text)
            assert (await http.get(f"{notes.url}/v1/webhooks", headers=auth)).status_code == 404

            r = await http.post(
                f"{notes.url}/v1/webhooks", headers=auth, json={"url": "http://public.centre.test/"}
            )
            assert problem_of(r)["detail"] == HTTPS_REQUIRED
            r = await http.post(
                f"{notes.url}/v1/webhooks",
                headers=auth,
                json={"url": "https://public.centre.test/hooks"},
            )
            assert r.status_code == 201, r.text
    assert connects == []  # registration resolves, never connects
    assert "metadata.google.internal" not in dns.asked
    assert {f"c{i}.centre.test" for i in range(len(REFUSED))} <= set(dns.asked)


async def test_a_destination_rebound_after_registration_gets_nothing(
    tmp_path: Path, nats_server: NatsServer, clean_streams: None
) -> None:
    dns = FakeDNS()
    dns.answer(HOST, "127.0.0.1")
    connects: list[tuple[str, int]] = []
    receiver = Receiver(secret="")
    with (
        ServedApp(receiver.app()) as hook_server,
        serve_all(tmp_path, nats_server.url, resolver=dns, max_attempts=100) as (
            registry,
            _,
            notes,
        ),
    ):
        notes.destinations.on_connect = lambda a, p: connects.append((a, p))
        port = hook_server.port
        async with httpx.AsyncClient(timeout=30) as http:
            auth = registry.auth()
            registered = await http.post(
                f"{notes.url}/v1/webhooks", headers=auth, json={"url": f"http://{HOST}:{port}/h"}
            )
            assert registered.status_code == 201, registered.text
            receiver.secret = registered.json()["secret"]
            dns.answer(HOST, "10.0.0.7")  # the center's DNS now points inside our network

            await http.post(f"{registry.url}/v1/candidates", json=candidate("R1"), headers=auth)
            lines = [x for x in full_lines("R1", "14") if x["bloc"] == "RNCP40705BC01"]
            await http.post(f"{registry.url}/v1/deliberations", json=pv(lines), headers=auth)

            async def webhook(done: Any) -> dict[str, Any] | None:
                r = await http.get(
                    f"{notes.url}/v1/notifications", params={"candidate_number": "R1"}, headers=auth
                )
                if r.status_code != 200:
                    return None
                hooks = [n for n in r.json()["notifications"] if n["channel"] == "webhook"]
                return hooks[0] if hooks and done(hooks[0]) else None

            refused = await until(lambda: webhook(lambda n: n["state"] == "failed"), timeout=60)
            assert refused["last_error"] == "injoignable"
            assert "10.0.0.7" not in json.dumps(refused)
            assert connects == [] and receiver.verified == {} and receiver.rejected == {}

            dns.answer(HOST, "127.0.0.1")  # fixed: the next attempt goes through
            sent = await until(lambda: webhook(lambda n: n["state"] == "sent"), timeout=60)
            details = [h.get("detail") for h in sent["history"]]
            assert details[-1] == "livré (HTTP 204)"
            assert set(details[:-1]) <= {"injoignable", None}
    assert set(connects) == {("127.0.0.1", port)}
    assert sum(len(v) for v in receiver.verified.values()) == 1


async def test_hanging_name_lookups_hold_their_own_threads_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getaddrinfo cannot be cancelled: lookups that hang (a black-holed DNS server) must
    not take the threads the dispatcher, consumers and relay run on, nor pile up."""
    from services.notifications import destinations

    release = threading.Event()

    def hanging(host: str, port: int) -> list[str]:
        release.wait(30)
        return ["192.0.2.1"]

    lookups = destinations._Lookups()
    monkeypatch.setattr(lookups, "_lookup", hanging)
    capacity = destinations.DNS_THREADS + destinations.DNS_WAITING
    stuck = [asyncio.ensure_future(lookups.resolve(f"h{i}.example", 443)) for i in range(capacity)]
    await asyncio.sleep(0)  # one turn of the loop: each task has taken its slot
    try:
        with pytest.raises(OSError, match="too many"):
            await lookups.resolve("one-more.example", 443)  # refused at once, not queued
        # The default executor (asyncio.to_thread) is untouched.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), timeout=2) == 42
        for task in stuck[destinations.DNS_THREADS :]:  # queued ones, abandoned
            task.cancel()
        await asyncio.gather(*stuck[destinations.DNS_THREADS :], return_exceptions=True)
        more = asyncio.ensure_future(lookups.resolve("after.example", 443))  # slots are back
    finally:
        release.set()
    assert await asyncio.wait_for(more, timeout=5) == ["192.0.2.1"]
    await asyncio.gather(*stuck[: destinations.DNS_THREADS])
