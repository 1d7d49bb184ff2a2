"""Where a webhook may go: the address policy, the one resolution per check, and an HTTP
transport that connects only to the addresses that were checked.

A center chooses its webhook URL, so without a policy the dispatcher is a request forger
inside our network (cloud metadata, NATS monitoring, PostgreSQL, the other services). The
host is resolved at registration and again before every delivery; the delivery then connects
to exactly the addresses that check accepted (``pinned``), never resolving the name a second
time, so a name that answers a public address to the check and a private one to the
connection (DNS rebinding) cannot get through. TLS still names the original host: SNI and
certificate verification are for the URL's host name, not for the address. Kept-alive
connections are pooled by host name, so one reused by a later delivery goes to an address
checked before (and that delivery's own check must pass first).

A name is refused if ANY of its addresses is refused, rather than keeping only the allowed
ones: a name that mixes public and internal addresses is a misconfiguration or an attack,
and filtering would make the outcome depend on which address was tried while still letting a
center probe which internal names exist. Refusing is predictable and is said at registration.

``NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS`` is the only way through: an address inside one of
its networks is accepted whatever its class, and over plain http (tests, a local receiver).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpcore
import httpx

__all__ = [
    "METADATA_NAMES",
    "Destination",
    "Destinations",
    "HttpsRequired",
    "IPAddress",
    "IPNetwork",
    "PinnedBackend",
    "Refused",
    "Resolver",
    "parse_networks",
    "pinned",
    "refusal",
    "system_resolver",
    "webhook_client",
]

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host (ASCII, IDNA-encoded), port -> the addresses it resolves to, as text
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

# Names of cloud instance-metadata services, refused before any resolution (their addresses
# are link-local and refused anyway; refusing the name also keeps the query off the resolver).
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
        "metadata.packet.net",
        "metadata.platformequinix.com",
    }
)

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# IANA special-purpose registries (RFC 6890 and successors), most specific first. Anything
# IPv4 not listed is public; IPv6 outside 2000::/3 (global unicast) is refused as reserved.
_REFUSED_V4: tuple[tuple[str, ipaddress.IPv4Network], ...] = (
    ("unspecified", _V4("0.0.0.0/32")),
    ("this-network", _V4("0.0.0.0/8")),
    ("private", _V4("10.0.0.0/8")),
    ("cgnat", _V4("100.64.0.0/10")),  # also Alibaba's metadata, 100.100.100.200
    ("loopback", _V4("127.0.0.0/8")),
    ("link-local", _V4("169.254.0.0/16")),  # 169.254.169.254: AWS, GCP, Azure metadata
    ("private", _V4("172.16.0.0/12")),
    ("ietf-protocol", _V4("192.0.0.0/24")),  # 192.0.0.192: Oracle Cloud metadata
    ("documentation", _V4("192.0.2.0/24")),
    ("6to4-relay", _V4("192.88.99.0/24")),
    ("private", _V4("192.168.0.0/16")),
    ("benchmark", _V4("198.18.0.0/15")),
    ("documentation", _V4("198.51.100.0/24")),
    ("documentation", _V4("203.0.113.0/24")),
    ("multicast", _V4("224.0.0.0/4")),
    ("broadcast", _V4("255.255.255.255/32")),
    ("reserved", _V4("240.0.0.0/4")),
)
_REFUSED_V6: tuple[tuple[str, ipaddress.IPv6Network], ...] = (
    ("unspecified", _V6("::/128")),
    ("loopback", _V6("::1/128")),
    ("ipv4-compatible", _V6("::/96")),  # deprecated (RFC 4291)
    ("discard", _V6("100::/64")),
    ("nat64-local", _V6("64:ff9b:1::/48")),  # local-use NAT64 (RFC 8215)
    ("benchmark", _V6("2001:2::/48")),
    ("orchid", _V6("2001:10::/28")),
    ("orchid", _V6("2001:20::/28")),
    ("documentation", _V6("2001:db8::/32")),
    ("documentation", _V6("3fff::/20")),
    ("unique-local", _V6("fc00::/7")),  # fd00:ec2::254: AWS metadata over IPv6
    ("link-local", _V6("fe80::/10")),
    ("site-local", _V6("fec0::/10")),
    ("multicast", _V6("ff00::/8")),
)
_GLOBAL_UNICAST = _V6("2000::/3")
_IPV4_TRANSLATED = _V6("::ffff:0:0:0/96")  # SIIT (RFC 2765)
_NAT64 = _V6("64:ff9b::/96")  # well-known NAT64 prefix: public v4 through a translator


def refusal(address: IPAddress) -> str | None:
    """The class of ``address`` when a webhook must not go there, else ``None``.

    IPv6 forms that carry an IPv4 address are judged by it: NAT64, 6to4 and Teredo are
    accepted only when every embedded IPv4 is public; IPv4-mapped and -translated addresses
    are always refused (no public destination has one in its DNS)."""
    if isinstance(address, ipaddress.IPv4Address):
        return next((name for name, net in _REFUSED_V4 if address in net), None)
    if address.ipv4_mapped is not None:
        return "ipv4-mapped"
    if address in _IPV4_TRANSLATED:
        return "ipv4-translated"
    if address in _NAT64:
        inner = refusal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return f"nat64:{inner}" if inner else None
    embedded: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)  # (server, client), the client de-obfuscated
    for inner_address in embedded:
        inner = refusal(inner_address)
        if inner:
            return f"{'6to4' if address.sixtofour else 'teredo'}:{inner}"
    found = next((name for name, net in _REFUSED_V6 if address in net), None)
    if found is None and address not in _GLOBAL_UNICAST:
        return "reserved"
    return found


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1/128"`` -> networks; a bare address is a one-address network."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


class Refused(Exception):
    """The destination may not be used; the message is for logs (it may name an address),
    never for the center."""


class HttpsRequired(Refused):
    """Plain http to an address outside the allowed networks."""


@dataclass(frozen=True)
class Destination:
    """A URL's host, port and the addresses that were checked for it."""

    host: str  # as the connection pool names it: ASCII, lower case, as in the URL
    port: int
    addresses: tuple[str, ...]


DNS_THREADS = 4  # lookups in flight at once
DNS_WAITING = 64  # lookups queued behind them; beyond, refused at once


class _Lookups:
    """The system resolver's lookups, on threads of their own. ``getaddrinfo`` cannot be
    cancelled: a lookup abandoned at our timeout holds its thread until the OS gives up. On
    the loop's default executor, a center whose name hangs (a black-holed DNS server) would
    hold the threads that claims, consumers and the relay need; here it holds at most these,
    and what queues behind them is bounded."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(DNS_THREADS + DNS_WAITING)

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        if not self._slots.acquire(blocking=False):
            raise OSError("too many name lookups in progress")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="webhook-dns")
        future = self._executor.submit(self._lookup, host, port)
        # Released when the lookup ends, or when it is cancelled before it started.
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    @staticmethod
    def _lookup(host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        return [str(info[4][0]) for info in infos]


_LOOKUPS = _Lookups()  # no thread until the first lookup


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The host's TCP addresses, from the system resolver, without blocking the loop nor
    its default executor."""
    return await _LOOKUPS.resolve(host, port)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_pins: contextvars.ContextVar[Destination | None] = contextvars.ContextVar(
    "webhook_destination", default=None
)


@contextlib.contextmanager
def pinned(destination: Destination) -> Iterator[None]:
    """Within this block (this task), connections to the destination's host go to its
    checked addresses; connections to any other host are refused."""
    token = _pins.set(destination)
    try:
        yield
    finally:
        _pins.reset(token)


class Destinations:
    """The address policy and the resolver: ``check`` says whether a URL may be used and
    which addresses to connect to."""

    def __init__(
        self,
        allowed: Iterable[IPNetwork] = (),
        resolver: Resolver = system_resolver,
        resolve_timeout: float = 5.0,
    ) -> None:
        self.allowed = tuple(allowed)
        self.resolver = resolver
        self.resolve_timeout = resolve_timeout
        self.on_connect: Callable[[str, int], None] | None = None  # tests watch connections

    def client(self, timeout: float = 5.0) -> httpx.AsyncClient:
        """The delivery client, its connections reported to ``on_connect``."""
        return webhook_client(timeout, backend=PinnedBackend(self._connecting))

    def _connecting(self, address: str, port: int) -> None:
        if self.on_connect is not None:
            self.on_connect(address, port)

    def is_allowed(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allowed)

    async def check(self, url: str) -> Destination:
        """Resolve the URL's host once and check every address; raise ``Refused`` (or
        ``HttpsRequired``) with an internal reason when it may not be used."""
        try:
            parsed = httpx.URL(url)
            scheme = parsed.scheme.lower()
            host = parsed.raw_host.decode("ascii").lower()
        except (httpx.InvalidURL, ValueError, UnicodeError):
            raise Refused("malformed URL") from None
        if scheme not in _DEFAULT_PORTS or not host:
            raise Refused("not an http(s) URL with a host")
        port = parsed.port or _DEFAULT_PORTS[scheme]
        if host.rstrip(".") in METADATA_NAMES:
            raise Refused(f"metadata service name {host!r}")
        addresses = [_parse(a) for a in await self._resolve(host, port)]
        if not addresses:
            raise Refused(f"{host!r} has no address")
        for address in addresses:
            if not self.is_allowed(address):
                reason = refusal(address)
                if reason:
                    raise Refused(f"{host!r} resolves to {address} ({reason})")
        if scheme != "https" and not all(self.is_allowed(a) for a in addresses):
            raise HttpsRequired(f"plain http to {host!r} outside the allowed networks")
        ordered = tuple(dict.fromkeys(str(a) for a in addresses))
        return Destination(host=host, port=port, addresses=ordered)

    async def _resolve(self, host: str, port: int) -> Sequence[str]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        try:
            async with asyncio.timeout(self.resolve_timeout):
                return await self.resolver(host, port)
        except TimeoutError:
            raise Refused(f"resolving {host!r} timed out") from None
        except (OSError, UnicodeError) as error:  # socket.gaierror is an OSError
            raise Refused(f"{host!r} does not resolve: {error}") from None


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _parse(text: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise Refused(f"resolver answered a non-address {text!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(text.split("%", 1)[0])  # judged without its zone
    return address


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the name resolution taken out: a connection goes to the
    addresses ``pinned`` checked for its host, in order, and nowhere else."""

    def __init__(self, on_connect: Callable[[str, int], None] | None = None) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.on_connect = on_connect  # tests watch where connections go

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        destination = _pins.get()
        if destination is None or (destination.host, destination.port) != (host.lower(), port):
            raise httpcore.ConnectError("no checked address for this host")
        failure: Exception = httpcore.ConnectError("no address")
        for address in destination.addresses:
            if self.on_connect is not None:
                self.on_connect(address, port)
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request/response mapping, exception mapping) over a connection
    pool whose network backend is ``PinnedBackend``. httpx does not take a network backend
    yet (encode/httpx#3180, #3749), httpcore's pool does: the pool is replaced once, here,
    and the check below fails the start if httpx ever stops keeping it there."""

    def __init__(
        self, backend: PinnedBackend, ssl_context: ssl.SSLContext, limits: httpx.Limits
    ) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx.AsyncHTTPTransport no longer keeps its pool in _pool")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def webhook_client(
    timeout: float = 5.0,
    *,
    backend: PinnedBackend | None = None,
    ssl_context: ssl.SSLContext | None = None,
    limits: httpx.Limits | None = None,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """The client deliveries go through: connects only where ``pinned`` says, no proxy from
    the environment (it would connect elsewhere), no redirects, certificates checked for the
    URL's host."""
    transport = _PinnedTransport(
        backend or PinnedBackend(),
        ssl_context or httpx.create_ssl_context(),
        limits or httpx.Limits(),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout),
        follow_redirects=follow_redirects,
        trust_env=False,
    )
