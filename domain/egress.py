"""Which network destinations outbound requests may reach.

Refused unless the operator allows them: loopback, private, link-local (which holds the cloud
metadata address 169.254.169.254), shared/CGNAT (100.64.0.0/10), multicast, unspecified and
reserved addresses, in IPv4 and IPv6, including IPv4 addresses wrapped in IPv6 (IPv4-mapped,
6to4, NAT64 well-known prefix). The check applies to resolved addresses, so a hostname that
resolves to a refused address is refused too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from domain.errors import DomainError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_EXTRA_REFUSED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # shared address space (carrier-grade NAT)
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6 (also unique-local)
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(DomainError):
    """An outbound request to a destination the egress policy refuses (400)."""


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached, or None when it may."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        reason = refusal(inner)
        return f"{reason} (inside {address})" if reason else None
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local (cloud metadata lives here)"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_reserved, "reserved"),
        (
            any(address in net for net in _EXTRA_REFUSED if net.version == address.version),
            "shared/special-purpose",
        ),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    return next((reason for hit, reason in checks if hit), None)


@dataclass(frozen=True)
class EgressPolicy:
    """Refused destinations, minus what the operator allows (hostnames and networks)."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, allow: str | None) -> EgressPolicy:
        """``"localhost, 127.0.0.0/8, api.internal"`` -> allowed hostnames and networks."""
        hosts, networks = set(), []
        for item in (allow or "").split(","):
            item = item.strip().lower()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                hosts.add(item.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allowed_hosts

    def check(self, host: str, address: IPAddress) -> None:
        """Raise EgressRefused unless ``address`` (resolved from ``host``) may be reached."""
        if self.host_allowed(host) or any(address in net for net in self.allowed_networks):
            return
        reason = refusal(address)
        if reason:
            raise EgressRefused(
                f"Outbound request to {host} refused: {address} is {reason}. "
                "Operators can allow it with TOLSTOY_EGRESS_ALLOW."
            )
