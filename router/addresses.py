"""Which addresses a media fetch may connect to: public ones, unless the operator allows a
network (`MediaSettings.allow_cidrs`); an IPv6 address carrying an IPv4 one is judged by both."""

from __future__ import annotations

import ipaddress
from typing import Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_NAT64_WKP = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPAT = ipaddress.ip_network("::/96")
# public addresses that answer as the host's cloud control plane (Azure's wire server)
_METADATA = (ipaddress.ip_network("168.63.129.16/32"),)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo server,
    IPv4-compatible), or None."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_WKP:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[0]  # the Teredo server; the client part is obfuscated
    if ip in _IPV4_COMPAT and int(ip) > 1:  # deprecated ::a.b.c.d (:: and ::1 excluded)
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _why_not_public(ip: IPAddress) -> str | None:
    """The kind of non-public address `ip` is ("a loopback address"...), or None if public."""
    if any(ip in net for net in _METADATA if ip.version == net.version):
        return "a cloud metadata address"
    if ip.version == 6 and ip.is_site_local:  # fec0::/10, deprecated but still routed
        return "a site-local address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def address_refusal(
    ip: IPAddress, allow: list[IPNetwork] | tuple[IPNetwork, ...] = ()
) -> str | None:
    """Why a fetch may not connect to `ip` ("a private address"...), or None when it may.

    An address inside one of `allow` is always allowed. An IPv6 address carrying an IPv4 address
    is judged by the IPv4 address as well (both must be public, or the IPv4 one allowed)."""
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = _embedded_ipv4(ip)
        if v4 is not None:
            if any(net.version == 4 and v4 in net for net in allow):
                return None
            reason = _why_not_public(v4)
            if reason is not None:
                return reason
            if ip.ipv4_mapped is not None or ip in _NAT64_WKP:
                # both lie in ::/8, "reserved" to ipaddress, but reach the (public) IPv4 address
                return None
    return _why_not_public(ip)
