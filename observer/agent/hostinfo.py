"""Facts about the host the agent runs on (its own addresses get the host identity)."""

from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute


def host_addresses() -> list[str]:
    """Every IPv4/IPv6 address configured in the host's network namespace."""
    out: list[str] = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            addr = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
            if not addr:
                continue
            try:
                out.append(ipaddress.ip_address(addr.split("%")[0]).compressed)
            except ValueError:
                continue
    return out
