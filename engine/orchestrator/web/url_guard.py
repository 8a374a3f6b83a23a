"""The SSRF guard of the web tools: a URL the model asks for is fetched only if it is http(s) and
every address its host resolves to is a public one, unless the host is allow-listed.

Refused: loopback, private (RFC 1918, ULA), link-local (which holds the cloud metadata endpoint
169.254.169.254), shared (CGN), multicast, reserved, unspecified and documentation ranges, and the
same hidden inside IPv6 (IPv4-mapped, NAT64, 6to4, Teredo). The metadata addresses are named on
their own so that allow-listing a private range by name never lets them through by accident.

The check resolves the host once and the fetch then connects to that checked address (`Target`
carries it), so a DNS answer that changes between check and connect (rebinding) cannot redirect
the request. Redirects are not followed by the HTTP client: each hop is checked again here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from engine import observe

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """The URL may not be fetched; the message says why (it is shown to the model)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`, None when the host is allow-listed and left to
    the resolver), and the host name for the Host header and TLS."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress | None


def refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused, or None if it is a public address."""
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            reason = refusal(embedded)
            return None if reason is None else f"{reason} (inside an IPv6 address)"
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not public", not address.is_global),  # shared 100.64/10, documentation, benchmarking
    )
    for name, hit in checks:
        if hit:
            return f"a {name} address" if name != "not public" else "not a public address"
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


class AddressGuard:
    """Checks URLs against the address rules; `allow_hosts` (names or literal addresses, compared
    case-insensitively) are let through whatever they resolve to."""

    def __init__(self, allow_hosts: Iterable[str] = ()) -> None:
        self.allow_hosts = frozenset(host.strip().lower().strip("[]") for host in allow_hosts)

    async def check(self, url: str) -> Target:
        """The checked target of `url`; raises Refused. Each decision is an audit event."""
        try:
            target = await self._check(url)
        except Refused as exc:
            observe.audit("network.policy", decision="refused", url=url[:200], reason=str(exc))
            raise
        observe.audit("network.policy", decision="allowed", url=url[:200], host=target.host)
        return target

    async def _check(self, url: str) -> Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise Refused(f"not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise Refused(f"only http and https URLs can be fetched, not {scheme or 'this'!r}")
        host = (parts.hostname or "").lower()
        if not host:
            raise Refused("the URL has no host")
        port = port or (443 if scheme == "https" else 80)
        if host.rstrip(".") in self.allow_hosts:
            return Target(url, scheme, host, port, None)
        addresses = await _resolve(host, port)
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise Refused(f"{host} resolves to {address}, {reason}: it may not be fetched")
        return Target(url, scheme, host, port, addresses[0])


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"the host {host} could not be resolved: {exc}") from None
    # Scoped IPv6 answers (fe80::1%eth0) lose their scope here; they are link-local anyway.
    found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not found:
        raise Refused(f"the host {host} has no address")
    return found
