"""Pure field formatters: one flow dict (Hubble's JSON shape) in, printable text out.

Every string taken from the flow is passed through ``escape`` first; colour sequences are
added afterwards by ``Colors``. The rules follow Hubble's printer (reference §7.1).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from hubblectl.printer.escape import escape
from hubblectl.printer.options import Colors
from hubblectl.printer.timefmt import format_time_value
from observer.parser.dropreasons import drop_reason_text

Flow = Mapping[str, Any]

# Cilium monitor message types (CiliumEventType.type).
TYPE_DROP: Final = 1
TYPE_DEBUG: Final = 2
TYPE_CAPTURE: Final = 3
TYPE_TRACE: Final = 4
TYPE_POLICY_VERDICT: Final = 5
TYPE_TRACE_SOCK: Final = 7
TYPE_L7: Final = 129
TYPE_AGENT: Final = 130

# Datapath observation points (event_type.sub_type of traces) -> CLI names.
TRACE_POINT_NAMES: Final = MappingProxyType(
    {
        0: "to-endpoint",
        1: "to-proxy",
        2: "to-host",
        3: "to-stack",
        4: "to-overlay",
        5: "from-endpoint",
        6: "from-proxy",
        7: "from-host",
        8: "from-stack",
        9: "from-overlay",
        10: "from-network",
        11: "to-network",
        12: "from-crypto",
        13: "to-crypto",
    }
)

POLICY_MATCH_NAMES: Final = MappingProxyType(
    {
        0: "none",
        1: "L3-Only",
        2: "L3-L4",
        3: "L4-Only",
        4: "all",
        5: "L3-Proto",
        6: "Proto-Only",
    }
)

# Reserved security identities that print by name instead of (ID:n).
RESERVED_IDENTITY_NAMES: Final = MappingProxyType(
    {
        0: "unknown",
        1: "host",
        2: "world",
        3: "unmanaged",
        4: "health",
        5: "init",
        6: "remote-node",
        7: "kube-apiserver",
        8: "ingress",
        9: "world-ipv4",
        10: "world-ipv6",
    }
)

_SOCK_XLATE_NAMES: Final = MappingProxyType(
    {
        "SOCK_XLATE_POINT_PRE_DIRECTION_FWD": "pre-xlate-fwd",
        "SOCK_XLATE_POINT_POST_DIRECTION_FWD": "post-xlate-fwd",
        "SOCK_XLATE_POINT_PRE_DIRECTION_REV": "pre-xlate-rev",
        "SOCK_XLATE_POINT_POST_DIRECTION_REV": "post-xlate-rev",
        "1": "pre-xlate-fwd",
        "2": "post-xlate-fwd",
        "3": "pre-xlate-rev",
        "4": "post-xlate-rev",
    }
)

_PORT_PROTOCOLS: Final = ("TCP", "UDP", "SCTP")


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def as_int(value: object, default: int = 0) -> int:
    """An integer from a JSON value (protojson accepts numbers and numeric strings)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def _str(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _enum(value: object, default: str) -> str:
    """An enum as printed text: the name as given, or the default when unset."""
    if value is None or value == "" or value == 0:
        return default
    return _str(value)


def event_type(flow: Flow) -> tuple[int, int]:
    """``(event_type.type, event_type.sub_type)``; missing fields are 0."""
    et = _map(flow.get("event_type"))
    return as_int(et.get("type")), as_int(et.get("sub_type"))


def format_time(flow_time: object, layout: str) -> str:
    """A flow or response ``time`` in the chosen layout (``N/A`` if missing or invalid)."""
    return format_time_value(flow_time, layout)


def join_host_port(host: str, port: str) -> str:
    """Go's ``net.JoinHostPort``: IPv6 literals (any host containing ``:``) get brackets."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _path_join(namespace: str, name: str) -> str:
    """Go's ``path.Join(ns, name)``: empty elements dropped, result cleaned."""
    parts = [p for p in (namespace, name) if p]
    if not parts:
        return ""
    cleaned = posixpath.normpath("/".join(parts))
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def ports(flow: Flow) -> tuple[str, str]:
    """Source and destination port as decimal strings (TCP/UDP/SCTP only), else ``""``."""
    l4 = _map(flow.get("l4"))
    for proto in _PORT_PROTOCOLS:
        if proto in l4:
            ports_ = _map(l4[proto])
            return str(as_int(ports_.get("source_port"))), str(
                as_int(ports_.get("destination_port"))
            )
    return "", ""


def hostname(
    ip: str,
    port: str,
    namespace: str,
    pod: str,
    service: str,
    names: Sequence[str],
    *,
    translate: bool,
    colors: Colors,
) -> str:
    """One side's ``host[:port]``, escaped and coloured (host cyan, port yellow inside it)."""
    host = ip
    if translate:
        if pod:
            host = _path_join(namespace, pod)
        elif service:
            host = _path_join(namespace, service)
        elif names:
            host = ",".join(names)
    host = escape(host)
    if port and port != "0":
        host = join_host_port(host, colors.port(escape(port)))
    return colors.host(host)


def _names(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [_str(v) for v in value]


def hostnames(flow: Flow, *, translate: bool, colors: Colors) -> tuple[str, str]:
    """Source and destination host columns (no reply swap)."""
    ip = flow.get("IP")
    if not isinstance(ip, dict):
        eth = flow.get("ethernet")
        if isinstance(eth, dict):
            return (
                colors.host(escape(_str(eth.get("source")))),
                colors.host(escape(_str(eth.get("destination")))),
            )
        return "", ""
    src_ep, dst_ep = _map(flow.get("source")), _map(flow.get("destination"))
    src_ns, dst_ns = _str(src_ep.get("namespace")), _str(dst_ep.get("namespace"))
    src_pod, dst_pod = _str(src_ep.get("pod_name")), _str(dst_ep.get("pod_name"))
    src_svc = dst_svc = ""
    if "source_service" in flow:
        svc = _map(flow.get("source_service"))
        src_ns, src_svc = _str(svc.get("namespace")), _str(svc.get("name"))
    if "destination_service" in flow:
        svc = _map(flow.get("destination_service"))
        dst_ns, dst_svc = _str(svc.get("namespace")), _str(svc.get("name"))
    src_port, dst_port = ports(flow)
    src = hostname(
        _str(ip.get("source")),
        src_port,
        src_ns,
        src_pod,
        src_svc,
        _names(flow.get("source_names")),
        translate=translate,
        colors=colors,
    )
    dst = hostname(
        _str(ip.get("destination")),
        dst_port,
        dst_ns,
        dst_pod,
        dst_svc,
        _names(flow.get("destination_names")),
        translate=translate,
        colors=colors,
    )
    return src, dst


def identity_text(value: object) -> str:
    """``(ID:n)`` or ``(name)`` for a reserved identity (0 is ``(unknown)``)."""
    num = as_int(value, -1) if value is not None else 0
    if num < 0:
        return f"(ID:{escape(_str(value))})"
    name = RESERVED_IDENTITY_NAMES.get(num)
    if name is not None:
        return f"({name})"
    return f"(ID:{num})"


def identities(flow: Flow, colors: Colors) -> tuple[str, str]:
    src = identity_text(_map(flow.get("source")).get("identity"))
    dst = identity_text(_map(flow.get("destination")).get("identity"))
    return colors.identity(src), colors.identity(dst)


def reply_state(flow: Flow) -> bool | None:
    """``is_reply``: True/False, or None when unknown (absent)."""
    value = flow.get("is_reply")
    if value is None:
        return None
    return bool(value)


def arrow(flow: Flow) -> str:
    """``->`` request, ``<-`` reply (the caller swaps the sides), ``<>`` direction unknown."""
    state = reply_state(flow)
    if state is None:
        return "<>"
    return "<-" if state else "->"


def flow_type(flow: Flow) -> str:
    """The TYPE column (escaped, never coloured)."""
    l7 = flow.get("l7")
    if isinstance(l7, dict):
        l7_type = _enum(l7.get("type"), "UNKNOWN_L7_TYPE").lower()
        proto = "l7"
        if "http" in l7:
            proto = "http"
        elif "dns" in l7:
            proto = "dns"
            l7_type += " " + _str(_map(l7.get("dns")).get("observation_source"))
        elif "kafka" in l7:
            proto = "kafka"
        return escape(f"{proto}-{l7_type}")
    typ, sub = event_type(flow)
    if typ == TYPE_TRACE:
        point = sub & 0xFF
        return TRACE_POINT_NAMES.get(point, str(point))
    if typ == TYPE_DROP:
        return escape(drop_reason_text(sub & 0xFF))
    if typ == TYPE_POLICY_VERDICT:
        match = POLICY_MATCH_NAMES.get(as_int(flow.get("policy_match_type")), "unknown")
        direction = _enum(flow.get("traffic_direction"), "TRAFFIC_DIRECTION_UNKNOWN")
        return escape(f"policy-verdict:{match} {direction}")
    if typ == TYPE_CAPTURE:
        return escape(_enum(flow.get("debug_capture_point"), "DBG_CAPTURE_POINT_UNKNOWN"))
    if typ == TYPE_TRACE_SOCK:
        point_name = _enum(flow.get("sock_xlate_point"), "SOCK_XLATE_POINT_UNKNOWN")
        return escape(_SOCK_XLATE_NAMES.get(point_name, point_name))
    return "UNKNOWN"


def _policy_names(policies: object) -> list[str]:
    out: list[str] = []
    if not isinstance(policies, list):
        return out
    for pol in policies:
        pol = _map(pol)
        name, kind = _str(pol.get("name")), _str(pol.get("kind"))
        if name and kind:
            out.append(f"{escape(name)} ({escape(kind)})")
    return out


def policy_names(flow: Flow, allowed: bool) -> list[str]:
    """``name (kind)`` of the policies that allowed (or denied) the flow, by direction."""
    kind = "allowed_by" if allowed else "denied_by"
    direction = _str(flow.get("traffic_direction"))
    if direction == "EGRESS":
        return _policy_names(flow.get(f"egress_{kind}"))
    if direction == "INGRESS":
        return _policy_names(flow.get(f"ingress_{kind}"))
    return _policy_names(flow.get(f"ingress_{kind}")) + _policy_names(flow.get(f"egress_{kind}"))


def verdict(flow: Flow, colors: Colors, *, print_policy_names: bool = False) -> str:
    """The VERDICT column.

    Policy-verdict events print ALLOWED/DENIED/AUDITED. With ``print_policy_names`` the
    deciding policies follow as `` BY name (kind), ...``: on policy verdicts as Hubble does,
    and (an extension) also on drop events, whose ``*_denied_by`` name the denying policy.
    AUDITED names the policy that would have denied.
    """
    name = _enum(flow.get("verdict"), "VERDICT_UNKNOWN")
    typ, _ = event_type(flow)
    is_policy = typ == TYPE_POLICY_VERDICT
    names: list[str] = []
    if name in ("FORWARDED", "REDIRECTED"):
        msg = "ALLOWED" if is_policy else name
        if print_policy_names and is_policy:
            names = policy_names(flow, allowed=True)
        paint = colors.green
    elif name in ("DROPPED", "ERROR"):
        msg = "DENIED" if is_policy else name
        if print_policy_names and (is_policy or typ == TYPE_DROP):
            names = policy_names(flow, allowed=False)
        paint = colors.red
    elif name == "AUDIT":
        msg = "AUDITED" if is_policy else name
        if print_policy_names and is_policy:
            names = policy_names(flow, allowed=False) or policy_names(flow, allowed=True)
        paint = colors.yellow
    elif name in ("TRACED", "TRANSLATED"):
        msg = name
        paint = colors.yellow
    else:
        return escape(name)
    if names:
        msg = f"{msg} BY {', '.join(names)}"
    return paint(escape(msg) if not names else msg)


def auth(flow: Flow, colors: Colors) -> str:
    """The auth type when authentication was required (empty when DISABLED/unset)."""
    name = _enum(flow.get("auth_type"), "DISABLED")
    if name == "DISABLED":
        return ""
    if name == "TEST_ALWAYS_FAIL":
        return colors.red(escape(name))
    return colors.green(escape(name))


def summary(flow: Flow, colors: Colors) -> str:
    """SUMMARY: ``IP Trace ID: n; `` + Summary + ``; Auth: TYPE``."""
    out = ""
    trace_id = as_int(_map(flow.get("ip_trace_id")).get("trace_id"))
    if trace_id > 0:
        out = f"IP Trace ID: {trace_id}; "
    out += escape(_str(flow.get("Summary")))
    auth_text = auth(flow, colors)
    if auth_text:
        out += f"; Auth: {auth_text}"
    return out


def node_name(value: object) -> str:
    return escape(_str(value))


def join_with_cutoff(elems: Sequence[str], sep: str, target_len: int) -> str:
    """Join, but stop once the text passes ``target_len`` (always at least one element),
    appending `` (and N more)`` for the rest."""
    length = 0
    end = len(elems)
    for i, elem in enumerate(elems):
        length += len(elem) + len(sep)
        if length > target_len and i > 0:
            end = i
            break
    joined = sep.join(elems[:end])
    omitted = len(elems) - end
    if omitted == 0:
        return joined
    return f"{joined} (and {omitted} more)"


def group_thousands(value: int) -> str:
    """``2348885`` -> ``2,348,885``."""
    return f"{value:,}"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String`` (``5m1.515181665s``, ``16m40s``, ``1.5ms``, ``0s``)."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        if u < 1_000:
            text = f"{u}ns"
        elif u < 1_000_000:
            text = _frac(u, 1_000) + "\u00b5s"
        else:
            text = _frac(u, 1_000_000) + "ms"
    else:
        secs, rem = divmod(u, 1_000_000_000)
        text = _frac(secs * 1_000_000_000 + rem, 1_000_000_000, keep_int_mod=60) + "s"
        minutes = secs // 60
        if minutes:
            hours, minutes = divmod(minutes, 60)
            text = f"{minutes}m{text}"
            if hours:
                text = f"{hours}h{text}"
    return "-" + text if neg else text


def _frac(value: int, unit: int, keep_int_mod: int | None = None) -> str:
    whole, rem = divmod(value, unit)
    if keep_int_mod is not None:
        whole %= keep_int_mod
    digits = len(str(unit)) - 1
    frac = f"{rem:0{digits}d}".rstrip("0") if rem else ""
    return f"{whole}.{frac}" if frac else f"{whole}"
