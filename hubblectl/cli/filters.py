"""``hubblectl observe`` filter flags -> FlowFilter dicts, as Hubble's CLI builds them.

Input is the ordered list of ``(flag, value)`` pairs as they appeared on the command line
(order matters for ``--not``). Rules (reference §6.4):

* each flag adds its value to one FlowFilter field; repeating a flag ORs values inside the
  field, different flags AND (they land in the same filter);
* symmetric flags (``--pod``, ``--ip``, ``--label``, ``--fqdn``, ``--port``, ``--service``,
  ``--workload``, ``--identity``, ``--cluster``) fill the source field of a *left* filter and
  the destination field of a *right* filter, so the whitelist holds two filters ("either
  direction"); every other flag goes into both; identical left/right collapse into one;
* ``--not`` sends the next filter flag to the blacklist (which has its own left/right pair);
* ``--namespace``/``--from-namespace``/``--to-namespace`` (and ``--all-namespaces``) prefix
  pod and service names lacking a namespace, or filter on the namespace alone;
* some flags may not be combined on the same side (``filters --X and --Y cannot be combined``).

Filters are dicts in FlowFilter's protojson shape (proto field names, enums by name, keys in
declaration order), the form ``observer.filters.compile_filters`` and ``--allowlist`` take.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import orjson

from hubblectl.errors import UsageError
from hubblectl.printer.fields import RESERVED_IDENTITY_NAMES, TRACE_POINT_NAMES
from observer.parser.dropreasons import DROP_REASON_CODES

FlowFilter = dict[str, Any]

# --- vocabulary ----------------------------------------------------------------------------

VERDICTS: Final = (
    "FORWARDED",
    "DROPPED",
    "AUDIT",
    "REDIRECTED",
    "ERROR",
    "TRACED",
    "TRANSLATED",
)
_ALL_VERDICTS: Final = ("VERDICT_UNKNOWN", *VERDICTS)

PROTOCOLS: Final = (
    "icmp",
    "icmpv4",
    "icmpv6",
    "sctp",
    "tcp",
    "udp",
    "vrrp",
    "igmp",
    "dns",
    "http",
    "kafka",
)

TRAFFIC_DIRECTIONS: Final = ("ingress", "egress")

TCP_FLAG_NAMES: Final = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")

# Monitor message type names accepted by --type (Cilium's MessageTypeNames).
EVENT_TYPE_NAMES: Final = MappingProxyType(
    {
        "drop": 1,
        "debug": 2,
        "capture": 3,
        "trace": 4,
        "policy-verdict": 5,
        "trace-sock": 7,
        "l7": 129,
        "agent": 130,
    }
)
# Types valid for flows, in the order --help and completion list them.
FLOW_EVENT_TYPES: Final = ("capture", "drop", "l7", "policy-verdict", "trace", "trace-sock")

AGENT_EVENT_SUBTYPES: Final = MappingProxyType(
    {
        "unspecified": 0,
        "message": 1,
        "agent-started": 2,
        "policy-updated": 3,
        "policy-deleted": 4,
        "endpoint-regenerate-success": 5,
        "endpoint-regenerate-failure": 6,
        "endpoint-created": 7,
        "endpoint-deleted": 8,
        "ipcache-upserted": 9,
        "ipcache-deleted": 10,
    }
)

TRACE_POINT_CODES: Final = MappingProxyType(
    {name: code for code, name in TRACE_POINT_NAMES.items()}
)
RESERVED_IDENTITY_CODES: Final = MappingProxyType(
    {name: code for code, name in RESERVED_IDENTITY_NAMES.items()}
)

# FlowFilter fields in proto declaration order (protojson key order).
FLOW_FILTER_FIELDS: Final = (
    "uuid",
    "source_ip",
    "source_ip_xlated",
    "source_pod",
    "source_fqdn",
    "source_label",
    "source_service",
    "source_workload",
    "source_cluster_name",
    "destination_ip",
    "destination_pod",
    "destination_fqdn",
    "destination_label",
    "destination_service",
    "destination_workload",
    "destination_cluster_name",
    "traffic_direction",
    "verdict",
    "drop_reason_desc",
    "interface",
    "event_type",
    "http_status_code",
    "protocol",
    "source_port",
    "destination_port",
    "reply",
    "dns_query",
    "source_identity",
    "destination_identity",
    "http_method",
    "http_path",
    "http_url",
    "http_header",
    "tcp_flags",
    "node_name",
    "node_labels",
    "ip_version",
    "trace_id",
    "ip_trace_id",
    "encrypted",
    "experimental",
)
_FIELD_SET: Final = frozenset(FLOW_FILTER_FIELDS)

# Flags that may not be used together on the same side (whitelist or blacklist).
CONFLICT_GROUPS: Final = (
    (
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
        "from-all-namespaces",
        "all-namespaces",
    ),
    ("from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"),
    (
        "to-fqdn",
        "to-ip",
        "ip",
        "fqdn",
        "to-namespace",
        "namespace",
        "to-all-namespaces",
        "all-namespaces",
    ),
    ("to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"),
    ("to-pod", "namespace", "all-namespaces"),
    ("from-pod", "namespace", "all-namespaces"),
    ("to-service", "namespace", "all-namespaces"),
    ("from-service", "namespace", "all-namespaces"),
    ("label", "from-label"),
    ("label", "to-label"),
    ("service", "from-service"),
    ("service", "to-service"),
    ("port", "to-port"),
    ("port", "from-port"),
    ("identity", "to-identity"),
    ("identity", "from-identity"),
    ("workload", "to-workload"),
    ("workload", "from-workload"),
    ("cluster", "to-cluster"),
    ("cluster", "from-cluster"),
    ("encrypted", "unencrypted"),
    ("ipv4", "ipv6"),
)

# flag -> (left field, right field) for symmetric flags; (field, field) for one-sided ones.
_SYMMETRIC: Final = MappingProxyType(
    {
        "ip": ("source_ip", "destination_ip"),
        "pod": ("source_pod", "destination_pod"),
        "fqdn": ("source_fqdn", "destination_fqdn"),
        "label": ("source_label", "destination_label"),
        "service": ("source_service", "destination_service"),
        "port": ("source_port", "destination_port"),
        "cluster": ("source_cluster_name", "destination_cluster_name"),
        "workload": ("source_workload", "destination_workload"),
        "identity": ("source_identity", "destination_identity"),
    }
)
_ONE_SIDED: Final = MappingProxyType(
    {
        "uuid": "uuid",
        "from-ip": "source_ip",
        "to-ip": "destination_ip",
        "snat-ip": "source_ip_xlated",
        "from-pod": "source_pod",
        "to-pod": "destination_pod",
        "from-fqdn": "source_fqdn",
        "to-fqdn": "destination_fqdn",
        "from-label": "source_label",
        "to-label": "destination_label",
        "from-service": "source_service",
        "to-service": "destination_service",
        "from-port": "source_port",
        "to-port": "destination_port",
        "from-cluster": "source_cluster_name",
        "to-cluster": "destination_cluster_name",
        "from-workload": "source_workload",
        "to-workload": "destination_workload",
        "from-identity": "source_identity",
        "to-identity": "destination_identity",
        "node-name": "node_name",
        "node-label": "node_labels",
        "protocol": "protocol",
        "http-status": "http_status_code",
        "http-method": "http_method",
        "http-path": "http_path",
        "http-url": "http_url",
        "trace-id": "trace_id",
    }
)
_NAMESPACE_FLAGS: Final = frozenset(
    {
        "namespace",
        "from-namespace",
        "to-namespace",
        "all-namespaces",
        "from-all-namespaces",
        "to-all-namespaces",
    }
)
_OTHER_FLAGS: Final = frozenset(
    {
        "ipv4",
        "ipv6",
        "ip-version",
        "verdict",
        "drop-reason-desc",
        "type",
        "tcp-flags",
        "traffic-direction",
        "http-header",
        "ip-trace-id",
        "interface",
        "encrypted",
        "unencrypted",
        "cel-expression",
    }
)
FILTER_FLAGS: Final = frozenset(
    {"not"} | set(_SYMMETRIC) | set(_ONE_SIDED) | _NAMESPACE_FLAGS | _OTHER_FLAGS
)
"""Every filter flag name (without dashes)."""

VALUELESS_FLAGS: Final = frozenset(
    {
        "not",
        "ipv4",
        "ipv6",
        "all-namespaces",
        "from-all-namespaces",
        "to-all-namespaces",
        "encrypted",
        "unencrypted",
    }
)

_HTTP_STATUS: Final = re.compile(r"[1-5](?:\d\d|\d?\+)")


# --- value parsers -------------------------------------------------------------------------


def _bad(flag: str, value: str, why: str) -> UsageError:
    return UsageError(f"invalid --{flag} value {value!r}: {why}")


def parse_ip(flag: str, value: str) -> str:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        raise _bad(
            flag, value, "expected an IP address or CIDR (e.g. 10.0.0.1, 10.0.0.0/8)"
        ) from None
    return value


def parse_port(flag: str, value: str) -> str:
    if not value.isdigit() or int(value) > 65535:
        raise _bad(flag, value, "expected a port number 0-65535")
    return str(int(value))


def parse_identity(flag: str, value: str) -> int:
    if value in RESERVED_IDENTITY_CODES:
        return RESERVED_IDENTITY_CODES[value]
    if value.isdigit() and int(value) < 2**32:
        return int(value)
    names = ", ".join(RESERVED_IDENTITY_NAMES.values())
    raise _bad(flag, value, f"expected a numeric identity or one of {names}")


def parse_workload(value: str) -> dict[str, str]:
    """``kind/name``, ``name`` or ``kind/`` -> Workload (empty parts omitted)."""
    kind, sep, name = value.partition("/")
    if not sep:
        kind, name = "", value
    out: dict[str, str] = {}
    if name:
        out["name"] = name
    if kind:
        out["kind"] = kind
    return out


def parse_tcp_flags(value: str) -> dict[str, bool]:
    wanted: set[str] = set()
    for part in value.split(","):
        name = part.strip().upper()
        if name not in TCP_FLAG_NAMES:
            raise _bad(
                "tcp-flags", value, f"unknown tcp flag {part!r}; one of {', '.join(TCP_FLAG_NAMES)}"
            )
        wanted.add(name)
    return {name: True for name in TCP_FLAG_NAMES if name in wanted}


def ip_version(value: str) -> str:
    lowered = value.lower()
    if lowered in ("4", "v4", "ipv4", "ip4"):
        return "IPv4"
    if lowered in ("6", "v6", "ipv6", "ip6"):
        return "IPv6"
    return "IP_NOT_USED"


def parse_event_type(value: str) -> dict[str, Any]:
    """``TYPE[:SUBTYPE]`` -> EventTypeFilter.

    TYPE is a name (``trace``, ``drop``, ``policy-verdict``, ``l7``, ``capture``, ``trace-sock``,
    ``debug``, ``agent``) or a number. SUBTYPE is an observation point for ``trace``
    (``to-endpoint``...), an agent notification for ``agent``, a drop reason name for ``drop``
    (``POLICY_DENIED``; an extension, Hubble takes numbers only), or a number.
    """
    type_text, sep, sub_text = value.partition(":")
    if type_text in EVENT_TYPE_NAMES:
        typ = EVENT_TYPE_NAMES[type_text]
    elif type_text.isdigit() and int(type_text) < 2**31:
        typ = int(type_text)
    else:
        raise _bad(
            "type",
            value,
            f"unknown type {type_text!r}; one of {', '.join(FLOW_EVENT_TYPES)} or a number",
        )
    out: dict[str, Any] = {"type": typ}
    if not sep:
        return out
    sub: int | None = None
    if typ == EVENT_TYPE_NAMES["trace"]:
        sub = TRACE_POINT_CODES.get(sub_text)
    elif typ == EVENT_TYPE_NAMES["agent"]:
        sub = AGENT_EVENT_SUBTYPES.get(sub_text)
    elif typ == EVENT_TYPE_NAMES["drop"]:
        sub = DROP_REASON_CODES.get(sub_text.upper())
    if sub is None:
        if not sub_text.isdigit() or int(sub_text) >= 2**31:
            raise _bad("type", value, f"unknown sub-type {sub_text!r}")
        sub = int(sub_text)
    out["match_sub_type"] = True
    if sub:
        out["sub_type"] = sub
    return out


def _parse_verdict(value: str) -> str:
    upper = value.upper()
    if upper not in _ALL_VERDICTS:
        raise _bad("verdict", value, f"one of {', '.join(VERDICTS)}")
    return upper


def _parse_drop_reason(value: str) -> str:
    upper = value.upper()
    if not upper:
        raise UsageError("empty --drop-reason-desc value")
    if upper not in DROP_REASON_CODES:
        raise _bad("drop-reason-desc", value, "not a DropReason name (e.g. POLICY_DENIED)")
    return upper


def _parse_protocol(value: str) -> str:
    if value.lower() not in PROTOCOLS:
        raise _bad("protocol", value, f"one of {', '.join(PROTOCOLS)}")
    return value


def _parse_http_status(value: str) -> str:
    if not _HTTP_STATUS.fullmatch(value):
        raise _bad("http-status", value, "expected a code 100-599 or a prefix like 5+ or 40+")
    return value


def _parse_traffic_direction(value: str) -> str:
    lowered = value.lower()
    if lowered not in TRAFFIC_DIRECTIONS:
        raise _bad("traffic-direction", value, "expected ingress or egress")
    return lowered.upper()


def _parse_ip_trace_id(value: str) -> str:
    if not value.isdigit() or int(value) == 0 or int(value) >= 2**64:
        raise _bad("ip-trace-id", value, "expected an integer greater than 0")
    return str(int(value))


def _parse_http_header(value: str) -> dict[str, str]:
    key, sep, hval = value.partition(":")
    if not sep:
        raise _bad("http-header", value, "expected name:value")
    out = {"key": key} if key else {}
    if hval:
        out["value"] = hval
    return out


# --- the tracker ---------------------------------------------------------------------------


def _namespace_of(name: str) -> str:
    head, sep, _ = name.partition("/")
    return head if sep else ""


def _add_namespaces(entries: list[str], namespaces: list[str]) -> list[str]:
    if not namespaces or not entries:
        return entries
    out: list[str] = []
    for entry in entries:
        if "/" in entry:
            out.append(entry)
            continue
        out.extend(f"{ns}/{entry}" for ns in namespaces)
    return out


@dataclass(slots=True)
class _Side:
    """One of whitelist/blacklist under construction: a left and a right filter."""

    left: FlowFilter | None = None
    right: FlowFilter | None = None
    ns: list[str] = field(default_factory=list)
    src_ns: list[str] = field(default_factory=list)
    dst_ns: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def _left(self) -> FlowFilter:
        if self.left is None:
            self.left = {}
        return self.left

    def _right(self) -> FlowFilter:
        if self.right is None:
            self.right = {}
        return self.right

    def add_left(self, key: str, value: Any) -> None:
        self._left().setdefault(key, []).append(value)

    def add_right(self, key: str, value: Any) -> None:
        self._right().setdefault(key, []).append(value)

    def add_both(self, key: str, value: Any) -> None:
        self.add_left(key, value)
        self.add_right(key, value)

    def track(self, flag: str) -> None:
        if flag not in self.changed:
            self.changed.append(flag)
        for group in CONFLICT_GROUPS:
            for first in group:
                if first not in self.changed:
                    continue
                for other in group:
                    if other != first and other in self.changed:
                        raise UsageError(f"filters --{first} and --{other} cannot be combined")

    def check_namespaces(self) -> None:
        for ff in (self.left, self.right):
            if ff is None:
                continue
            checks: list[tuple[list[str], list[str]]] = [
                (self.ns, ff.get("source_pod", [])),
                (self.ns, ff.get("source_service", [])),
                (self.ns, ff.get("destination_pod", [])),
                (self.ns, ff.get("destination_service", [])),
                (self.src_ns, ff.get("source_pod", [])),
                (self.src_ns, ff.get("source_service", [])),
                (self.dst_ns, ff.get("destination_pod", [])),
                (self.dst_ns, ff.get("destination_service", [])),
            ]
            for namespaces, names in checks:
                for ns in namespaces:
                    for name in names:
                        other = _namespace_of(name)
                        if other and other != ns:
                            raise UsageError(
                                f'namespace conflict: "{ns}" does not contain "{name}"'
                            )
            for pods_key, svcs_key in (
                ("source_pod", "source_service"),
                ("destination_pod", "destination_service"),
            ):
                for pod in ff.get(pods_key, []):
                    pod_ns = _namespace_of(pod)
                    if not pod_ns:
                        continue
                    for svc in ff.get(svcs_key, []):
                        if _namespace_of(svc) != pod_ns:
                            raise UsageError(
                                f'namespace of service "{svc}" conflicts with pod "{pod_ns}"'
                            )

    @staticmethod
    def _apply_src(ff: FlowFilter, namespaces: list[str]) -> None:
        if not ff.get("source_pod") and not ff.get("source_service"):
            ff["source_pod"] = [""]
        for key in ("source_pod", "source_service"):
            if key in ff:
                ff[key] = _add_namespaces(ff[key], namespaces)

    @staticmethod
    def _apply_dst(ff: FlowFilter, namespaces: list[str]) -> None:
        if not ff.get("destination_pod") and not ff.get("destination_service"):
            ff["destination_pod"] = [""]
        for key in ("destination_pod", "destination_service"):
            if key in ff:
                ff[key] = _add_namespaces(ff[key], namespaces)

    def filters(self) -> list[FlowFilter]:
        if self.left is None and self.right is None and not (self.ns or self.src_ns or self.dst_ns):
            return []
        left, right = self._left(), self._right()
        if self.dst_ns:
            self._apply_dst(left, self.dst_ns)
            self._apply_dst(right, self.dst_ns)
        if self.src_ns:
            self._apply_src(left, self.src_ns)
            self._apply_src(right, self.src_ns)
        if self.ns:
            self._apply_src(left, self.ns)
            self._apply_dst(right, self.ns)
        left, right = ordered_filter(left), ordered_filter(right)
        if left == right:
            return [left]
        return [left, right]


def ordered_filter(ff: Mapping[str, Any]) -> FlowFilter:
    """A FlowFilter dict with keys in declaration order and empty fields dropped."""
    return {
        key: ff[key] for key in FLOW_FILTER_FIELDS if key in ff and ff[key] not in ([], {}, None)
    }


def _apply_flag(side: _Side, flag: str, value: str | None) -> None:
    text = value if value is not None else ""
    side.track(flag)
    if flag in _SYMMETRIC:
        left_key, right_key = _SYMMETRIC[flag]
        item: Any = text
        if flag == "ip":
            item = parse_ip(flag, text)
        elif flag == "port":
            item = parse_port(flag, text)
        elif flag == "identity":
            item = parse_identity(flag, text)
        elif flag == "workload":
            item = parse_workload(text)
        side.add_left(left_key, item)
        side.add_right(right_key, item)
    elif flag in _ONE_SIDED:
        key = _ONE_SIDED[flag]
        item = text
        if flag in ("from-ip", "to-ip", "snat-ip"):
            item = parse_ip(flag, text)
        elif flag in ("from-port", "to-port"):
            item = parse_port(flag, text)
        elif flag in ("from-identity", "to-identity"):
            item = parse_identity(flag, text)
        elif flag in ("from-workload", "to-workload"):
            item = parse_workload(text)
        elif flag == "protocol":
            item = _parse_protocol(text)
        elif flag == "http-status":
            item = _parse_http_status(text)
        side.add_both(key, item)
    elif flag == "namespace":
        side.ns.append(text)
    elif flag == "from-namespace":
        side.src_ns.append(text)
    elif flag == "to-namespace":
        side.dst_ns.append(text)
    elif flag == "all-namespaces":
        side.ns.append("")
    elif flag == "from-all-namespaces":
        side.src_ns.append("")
    elif flag == "to-all-namespaces":
        side.dst_ns.append("")
    elif flag == "ipv4":
        side.add_both("ip_version", "IPv4")
    elif flag == "ipv6":
        side.add_both("ip_version", "IPv6")
    elif flag == "ip-version":
        side.add_both("ip_version", ip_version(text))
    elif flag == "verdict":
        side.add_both("verdict", _parse_verdict(text))
    elif flag == "drop-reason-desc":
        side.add_both("drop_reason_desc", _parse_drop_reason(text))
    elif flag == "type":
        side.add_both("event_type", parse_event_type(text))
    elif flag == "tcp-flags":
        side.add_both("tcp_flags", parse_tcp_flags(text))
    elif flag == "traffic-direction":
        side.add_both("traffic_direction", _parse_traffic_direction(text))
    elif flag == "http-header":
        side.add_both("http_header", _parse_http_header(text))
    elif flag == "ip-trace-id":
        side.add_both("ip_trace_id", _parse_ip_trace_id(text))
    elif flag == "interface":
        side.add_both("interface", {"name": text})
    elif flag == "encrypted":
        side.add_both("encrypted", True)
    elif flag == "unencrypted":
        side.add_both("encrypted", False)
    elif flag == "cel-expression":
        for ff in (side._left(), side._right()):
            ff.setdefault("experimental", {}).setdefault("cel_expression", []).append(text)
    else:  # pragma: no cover - FILTER_FLAGS and this dispatch are kept in step
        raise UsageError(f"unknown filter flag --{flag}")
    side.check_namespaces()


@dataclass(frozen=True, slots=True)
class FilterLists:
    whitelist: tuple[FlowFilter, ...] = ()
    blacklist: tuple[FlowFilter, ...] = ()


def build_filters(args: Iterable[tuple[str, str | None]]) -> FilterLists:
    """Build whitelist/blacklist from filter flags in command-line order.

    ``args`` holds ``(flag, value)`` with flag names without dashes (``from-pod``) and
    ``None`` values for valueless flags (``--not``, ``-4``...).
    """
    white, black = _Side(), _Side()
    negate = False
    for flag, value in args:
        if flag == "not":
            if negate:
                raise UsageError("consecutive --not statements")
            negate = True
            continue
        if flag not in FILTER_FLAGS:
            raise UsageError(f"unknown filter flag --{flag}")
        _apply_flag(black if negate else white, flag, value)
        negate = False
    if negate:
        raise UsageError("trailing --not found in the arguments")
    return FilterLists(tuple(white.filters()), tuple(black.filters()))


# --- raw filters (--allowlist / --denylist) ------------------------------------------------


def _camel(snake: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), snake)


_CAMEL: Final = MappingProxyType({_camel(name): name for name in FLOW_FILTER_FIELDS})
_NESTED_CAMEL: Final = MappingProxyType(
    {
        "matchSubType": "match_sub_type",
        "subType": "sub_type",
        "celExpression": "cel_expression",
    }
)
_ENUM_NUMBERS: Final = MappingProxyType(
    {
        "verdict": dict(enumerate(_ALL_VERDICTS)),
        "traffic_direction": {0: "TRAFFIC_DIRECTION_UNKNOWN", 1: "INGRESS", 2: "EGRESS"},
        "ip_version": {0: "IP_NOT_USED", 1: "IPv4", 2: "IPv6"},
    }
)


def _normalize_raw(flag: str, obj: Mapping[str, Any]) -> FlowFilter:
    out: FlowFilter = {}
    for key, value in obj.items():
        name = key if key in _FIELD_SET else _CAMEL.get(key)
        if name is None:
            raise UsageError(f"invalid --{flag} flag: unknown FlowFilter field {key!r}")
        if value is None:
            continue
        if name == "experimental":
            if not isinstance(value, Mapping):
                raise UsageError(f"invalid --{flag} flag: field {key!r} must be an object")
            value = {_NESTED_CAMEL.get(k, k): v for k, v in value.items()}
        elif not isinstance(value, list):
            raise UsageError(f"invalid --{flag} flag: field {key!r} must be a list")
        elif name == "event_type":
            value = [
                {_NESTED_CAMEL.get(k, k): v for k, v in item.items()}
                if isinstance(item, Mapping)
                else item
                for item in value
            ]
        elif name in _ENUM_NUMBERS:
            table = _ENUM_NUMBERS[name]
            value = [table.get(item, item) if isinstance(item, int) else item for item in value]
        elif name == "drop_reason_desc":
            names = {code: n for n, code in DROP_REASON_CODES.items()}
            value = [names.get(item, item) if isinstance(item, int) else item for item in value]
        out[name] = value
    return ordered_filter(out)


def parse_raw_filters(flag: str, values: Sequence[str]) -> list[FlowFilter]:
    """Parse ``--allowlist``/``--denylist`` values: each holds one or more JSON FlowFilter
    objects (proto or lowerCamel names), concatenated or whitespace separated."""
    decoder = json.JSONDecoder()
    out: list[FlowFilter] = []
    for text in values:
        pos = 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise UsageError(
                    f"invalid --{flag} flag: malformed JSON FlowFilter {text!r}: {err.msg} at char {err.pos}"
                ) from None
            if not isinstance(obj, dict):
                raise UsageError(f"invalid --{flag} flag: expected a JSON object, got {text!r}")
            out.append(_normalize_raw(flag, obj))
    return out


# --- --print-raw-filters -------------------------------------------------------------------


def filter_json(ff: Mapping[str, Any]) -> str:
    """One FlowFilter as compact JSON, the way Hubble marshals it (Go's HTML escaping)."""
    ordered = ordered_filter(ff)
    text = orjson.dumps(ordered).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _yaml_single_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def raw_filters_yaml(
    whitelist: Sequence[Mapping[str, Any]], blacklist: Sequence[Mapping[str, Any]]
) -> str:
    """What ``--print-raw-filters`` prints: YAML usable as a config/``--allowlist`` source."""
    lines: list[str] = []
    if whitelist:
        lines.append("allowlist:")
        lines.extend(f"    - {_yaml_single_quoted(filter_json(ff))}" for ff in whitelist)
    if blacklist:
        lines.append("denylist:")
        lines.extend(f"    - {_yaml_single_quoted(filter_json(ff))}" for ff in blacklist)
    if not lines:
        return "{}\n"
    return "\n".join(lines) + "\n"
