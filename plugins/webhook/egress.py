"""Egress control: which addresses a webhook may connect to.

Link-local and cloud-metadata networks are always denied (169.254.0.0/16, fe80::/10 and AWS's
IPv6 metadata address fd00:ec2::254); ``settings.webhook.deny`` adds networks and
``settings.webhook.allow`` punches holes in the deny list (an allowed network wins). Loopback
and private networks are allowed unless denied: to allow only some networks, deny ``0.0.0.0/0``
and ``::/0`` and allow those.

An unspecified address is checked as what connecting to it reaches: ``0.0.0.0`` (and the rest
of 0.0.0.0/8) is this host, checked as ``127.0.0.1``; ``::`` is checked as ``::1``. Otherwise a
deny list covering loopback would let ``http://0.0.0.0:PORT/`` through to local services.

The check is made on the address that is connected to, not on the name in the URL:
:class:`GuardedResolver` is the aiohttp client's resolver, so aiohttp connects only to addresses
that passed the check (no DNS rebinding between check and connect), and a literal IP in the URL
(which aiohttp does not resolve) is checked by :meth:`EgressPolicy.check_host` before the
request. Proxies from the environment are not used (``trust_env=False``), so the connected
address really is the destination's.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from typing import Iterable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

ALWAYS_DENIED = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
# "This host" addresses: connecting to them reaches the local host, over loopback.
_THIS_HOST_V4 = ipaddress.ip_network("0.0.0.0/8")
_LOOPBACK = {4: ipaddress.ip_address("127.0.0.1"), 6: ipaddress.ip_address("::1")}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefused(OSError):
    """A destination resolved only to refused addresses; no connection was made."""


def _networks(cidrs: Iterable[str]) -> list[Network]:
    out = []
    for text in cidrs:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"settings.webhook: {text!r} is not a network (CIDR such as "
                             "10.0.0.0/8 or fd00::/8)") from None
    return out


class EgressPolicy:
    def __init__(self, deny: Iterable[str] = (), allow: Iterable[str] = ()) -> None:
        self.deny = _networks([*ALWAYS_DENIED, *deny])
        self.allow = _networks(allow)
        self._seen: dict[str, str | None] = {}

    def refused(self, address: str) -> str | None:
        """Why ``address`` may not be connected to, or ``None`` when it may."""
        if address not in self._seen:
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[address] = self._check(address)
        return self._seen[address]

    def _check(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        given, ip = ip, _reached(ip)
        if any(ip in net for net in self.allow if net.version == ip.version):
            return None
        for net in self.deny:
            if net.version == ip.version and ip in net:
                why = "link-local / cloud metadata, always denied" if str(net) in ALWAYS_DENIED \
                    else "denied by settings.webhook.deny"
                what = f"{ip}" if given == ip else f"{given}, which connects to this host ({ip}),"
                return f"egress to {what} refused: it is in {net} ({why})"
        return None

    def check_host(self, host: str) -> None:
        """Refuse a literal IP host; a name is checked by the resolver when it is resolved."""
        key = "host:" + host
        if key not in self._seen:
            try:
                ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
                self._seen[key] = self.refused(host.strip("[]"))
            except ValueError:
                self._seen[key] = None
        if self._seen[key]:
            raise EgressRefused(self._seen[key])


def _reached(ip: ipaddress.IPv4Address | ipaddress.IPv6Address):
    """The address a connection to ``ip`` really goes to: loopback for the unspecified ones."""
    if ip.version == 4 and ip in _THIS_HOST_V4:
        return _LOOPBACK[4]
    if ip.version == 6 and ip.is_unspecified:
        return _LOOPBACK[6]
    return ip


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops refused addresses; raises :class:`EgressRefused` when none
    is left, so no connection is attempted."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed, reasons = [], []
        for result in results:
            reason = self.policy.refused(result["host"])
            if reason:
                reasons.append(reason)
            else:
                allowed.append(result)
        if not allowed:
            raise EgressRefused(f"{host} resolves only to refused addresses: " + "; ".join(
                dict.fromkeys(reasons)))
        return allowed

    async def close(self) -> None:
        await self._inner.close()


# The address the current task's request is connected to (set by RecordingConnector).
CONNECTED = contextvars.ContextVar("taskengine_webhook_connected", default=None)


class RecordingConnector(aiohttp.TCPConnector):
    """Remembers, for the task making the request, which address its connection goes to (a
    new connection or one reused from the pool), so the attempt log can show it."""

    async def connect(self, req, traces, timeout):  # type: ignore[override]
        conn = await super().connect(req, traces, timeout)
        transport = conn.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer:
            host, port = peer[0], peer[1]
            CONNECTED.set(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return conn
