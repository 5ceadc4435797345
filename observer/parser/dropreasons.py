"""Cilium drop reasons: the proto ``flow.DropReason`` names and the monitor texts.

``drop_reason_name`` gives what ``drop_reason_desc`` carries in a flow (the proto enum name);
``drop_reason_text`` gives what Hubble's CLI prints in the TYPE column of a drop (the monitor
text). The two disagree for 136 and 161 in Cilium v1.19.4; both are kept as found there.
Codes 2..15 exist only in the monitor (no proto name); 159 is unassigned.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# (code, proto DropReason name, monitor text), in code order.
_NAMED: Final[tuple[tuple[int, str, str], ...]] = (
    (0, "DROP_REASON_UNKNOWN", "Success"),
    (130, "INVALID_SOURCE_MAC", "Invalid source mac"),
    (131, "INVALID_DESTINATION_MAC", "Invalid destination mac"),
    (132, "INVALID_SOURCE_IP", "Invalid source ip"),
    (133, "POLICY_DENIED", "Policy denied"),
    (134, "INVALID_PACKET_DROPPED", "Invalid packet"),
    (135, "CT_TRUNCATED_OR_INVALID_HEADER", "CT: Truncated or invalid header"),
    (136, "CT_MISSING_TCP_ACK_FLAG", "Fragmentation needed"),
    (137, "CT_UNKNOWN_L4_PROTOCOL", "CT: Unknown L4 protocol"),
    (138, "CT_CANNOT_CREATE_ENTRY_FROM_PACKET", "CT: Can't create entry from packet"),
    (139, "UNSUPPORTED_L3_PROTOCOL", "Unsupported L3 protocol"),
    (140, "MISSED_TAIL_CALL", "Missed tail call"),
    (141, "ERROR_WRITING_TO_PACKET", "Error writing to packet"),
    (142, "UNKNOWN_L4_PROTOCOL", "Unknown L4 protocol"),
    (143, "UNKNOWN_ICMPV4_CODE", "Unknown ICMPv4 code"),
    (144, "UNKNOWN_ICMPV4_TYPE", "Unknown ICMPv4 type"),
    (145, "UNKNOWN_ICMPV6_CODE", "Unknown ICMPv6 code"),
    (146, "UNKNOWN_ICMPV6_TYPE", "Unknown ICMPv6 type"),
    (147, "ERROR_RETRIEVING_TUNNEL_KEY", "Error retrieving tunnel key"),
    (148, "ERROR_RETRIEVING_TUNNEL_OPTIONS", "Error retrieving tunnel options"),
    (149, "INVALID_GENEVE_OPTION", "Invalid Geneve option"),
    (150, "UNKNOWN_L3_TARGET_ADDRESS", "Unknown L3 target address"),
    (151, "STALE_OR_UNROUTABLE_IP", "Stale or unroutable IP"),
    (152, "NO_MATCHING_LOCAL_CONTAINER_FOUND", "No matching local container found"),
    (153, "ERROR_WHILE_CORRECTING_L3_CHECKSUM", "Error while correcting L3 checksum"),
    (154, "ERROR_WHILE_CORRECTING_L4_CHECKSUM", "Error while correcting L4 checksum"),
    (155, "CT_MAP_INSERTION_FAILED", "CT: Map insertion failed"),
    (156, "INVALID_IPV6_EXTENSION_HEADER", "Invalid IPv6 extension header"),
    (157, "IP_FRAGMENTATION_NOT_SUPPORTED", "IP fragmentation not supported"),
    (158, "SERVICE_BACKEND_NOT_FOUND", "Service backend not found"),
    (
        160,
        "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
        "No tunnel/encapsulation endpoint (datapath BUG!)",
    ),
    (161, "FAILED_TO_INSERT_INTO_PROXYMAP", "NAT 46/64 not enabled"),
    (162, "REACHED_EDT_RATE_LIMITING_DROP_HORIZON", "Reached EDT rate-limiting drop horizon"),
    (163, "UNKNOWN_CONNECTION_TRACKING_STATE", "Unknown connection tracking state"),
    (164, "LOCAL_HOST_IS_UNREACHABLE", "Local host is unreachable"),
    (
        165,
        "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION",
        "No configuration available to perform policy decision",
    ),
    (166, "UNSUPPORTED_L2_PROTOCOL", "Unsupported L2 protocol"),
    (167, "NO_MAPPING_FOR_NAT_MASQUERADE", "No mapping for NAT masquerade"),
    (168, "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE", "Unsupported protocol for NAT masquerade"),
    (169, "FIB_LOOKUP_FAILED", "FIB lookup failed"),
    (170, "ENCAPSULATION_TRAFFIC_IS_PROHIBITED", "Encapsulation traffic is prohibited"),
    (171, "INVALID_IDENTITY", "Invalid identity"),
    (172, "UNKNOWN_SENDER", "Unknown sender"),
    (173, "NAT_NOT_NEEDED", "NAT not needed"),
    (174, "IS_A_CLUSTERIP", "Is a ClusterIP"),
    (175, "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND", "First logical datagram fragment not found"),
    (176, "FORBIDDEN_ICMPV6_MESSAGE", "Forbidden ICMPv6 message"),
    (177, "DENIED_BY_LB_SRC_RANGE_CHECK", "Denied by LB src range check"),
    (178, "SOCKET_LOOKUP_FAILED", "Socket lookup failed"),
    (179, "SOCKET_ASSIGN_FAILED", "Socket assign failed"),
    (
        180,
        "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL",
        "Proxy redirection not supported for protocol",
    ),
    (181, "POLICY_DENY", "Policy denied by denylist"),
    (182, "VLAN_FILTERED", "VLAN traffic disallowed by VLAN filter"),
    (183, "INVALID_VNI", "Incorrect VNI from VTEP"),
    (184, "INVALID_TC_BUFFER", "Failed to update or lookup TC buffer"),
    (185, "NO_SID", "No SID was found for the IP address"),
    (186, "MISSING_SRV6_STATE", "SRv6 state was removed during tail call"),
    (187, "NAT46", "L3 translation from IPv4 to IPv6 failed (NAT46)"),
    (188, "NAT64", "L3 translation from IPv6 to IPv4 failed (NAT64)"),
    (189, "AUTH_REQUIRED", "Authentication required"),
    (190, "CT_NO_MAP_FOUND", "No conntrack map found"),
    (191, "SNAT_NO_MAP_FOUND", "No nat map found"),
    (192, "INVALID_CLUSTER_ID", "Invalid ClusterID"),
    (
        193,
        "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP",
        "Unsupported packet protocol for DSR encapsulation",
    ),
    (194, "NO_EGRESS_GATEWAY", "No egress gateway found"),
    (195, "UNENCRYPTED_TRAFFIC", "Traffic is unencrypted"),
    (196, "TTL_EXCEEDED", "TTL exceeded"),
    (197, "NO_NODE_ID", "No node ID found"),
    (198, "DROP_RATE_LIMITED", "Rate limited"),
    (199, "IGMP_HANDLED", "IGMP handled"),
    (200, "IGMP_SUBSCRIBED", "IGMP subscribed"),
    (201, "MULTICAST_HANDLED", "Multicast handled"),
    (202, "DROP_HOST_NOT_READY", "Host datapath not ready"),
    (203, "DROP_EP_NOT_READY", "Endpoint policy program not available"),
    (204, "DROP_NO_EGRESS_IP", "No Egress IP configured"),
    (205, "DROP_PUNT_PROXY", "Punt to proxy"),
)

# Codes the monitor knows that have no proto DropReason value.
_MONITOR_ONLY: Final[tuple[tuple[int, str], ...]] = (
    (2, "Invalid packet"),
    (3, "Interface"),
    (4, "Interface Decrypted"),
    (5, "LB, sock cgroup: No backend slot entry found"),
    (6, "LB, sock cgroup: No backend entry found"),
    (7, "LB, sock cgroup: Reverse entry update failed"),
    (8, "LB, sock cgroup: Reverse entry stale"),
    (9, "Fragmented packet"),
    (10, "Fragmented packet entry update failed"),
    (11, "Missed tail call to custom program"),
    (12, "Interface Decrypting"),
    (13, "Interface Encrypting"),
    (14, "LB: sock cgroup: Reverse entry delete succeeded"),
    (15, "MTU error message"),
)

DROP_REASON_NAMES: Final[Mapping[int, str]] = MappingProxyType({c: n for c, n, _ in _NAMED})
"""Drop code -> proto ``flow.DropReason`` enum name (only codes the proto names)."""

DROP_REASON_CODES: Final[Mapping[str, int]] = MappingProxyType({n: c for c, n, _ in _NAMED})
"""Proto ``flow.DropReason`` enum name -> drop code."""

DROP_REASON_TEXTS: Final[Mapping[int, str]] = MappingProxyType(
    {**{c: t for c, _, t in _NAMED}, **dict(_MONITOR_ONLY)}
)
"""Drop code -> monitor text (what ``hubble observe`` prints in the TYPE column)."""

POLICY_DROP_REASONS: Final[frozenset[int]] = frozenset({133, 181})
"""Drop codes that mean "a policy denied this" (POLICY_DENIED, POLICY_DENY)."""


def drop_reason_name(code: int) -> str:
    """The proto ``DropReason`` name of ``code``, or its decimal string if the proto has none.

    protojson prints an unnamed enum value as a bare number; callers building a flow dict
    should use ``DROP_REASON_NAMES.get(code, code)`` to get that exact shape.
    """
    name = DROP_REASON_NAMES.get(code)
    return name if name is not None else str(code)


def drop_reason_text(code: int) -> str:
    """The monitor text of ``code`` (e.g. ``"Policy denied"``), or its decimal string."""
    text = DROP_REASON_TEXTS.get(code)
    return text if text is not None else str(code)
