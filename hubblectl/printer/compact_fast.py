"""The compact printer's fast path: the same line as ``compact.format_flow``, for less work.

``make_fast_formatter(opts, colors)`` builds, once per set of printer options, two functions
that each return a flow's compact line, or ``None`` for a flow they do not handle (the caller
then uses the generic field-by-field formatter):

* ``by_fields`` reads any flow mapping with the same type checks as the generic code and
  caches per-value texts: host columns per (namespace, pod) or IP, identities, TYPE and
  VERDICT columns, node names, the time per second.
* ``from_json`` is for flows just decoded from JSON (``write_json``), whose containers are
  plain dicts and lists. It keys a whole-line template on every value the line depends on
  except the time and the port numbers (endpoints, identities, event type, verdict, reply,
  summary, ...); a hit costs the key, the time and the ports. A miss composes the line with
  ``by_fields``' functions and keeps the template.

How the equivalence is kept: every cached text is computed, on a miss, by the generic
functions (``fields``, ``timefmt``, ``escape``) from the values its key holds, and a key
holds every value the text depends on. Values are only read as the JSON types the generic
code treats alike (``str``, ``int``, ``dict``, ``None``, ...); anything else is declined. Two
keys that compare equal hold equal values: a ``str`` only equals a ``str``, and ints equal
to floats or bools (``1 == 1.0 == True``) read the same through ``fields.as_int`` and
``bool``. tests/unit/printer/test_printer_compact_fast.py compares both functions with the
generic formatter over the fixtures and hypothesis-generated flows for every option set.

The caches live in the closure, one set per printer, and are emptied when one grows past
``CACHE_LIMIT`` entries (a ``--follow`` may run for days).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, cast

from hubblectl.printer import fields
from hubblectl.printer.escape import escape
from hubblectl.printer.options import Colors, PrinterOptions
from hubblectl.printer.timefmt import DEFAULT_TIME_FORMAT, format_time_value, normalize_format_name

FastFormatter = Callable[[Mapping[str, Any]], "str | None"]
TimeRenderer = Callable[[object], str]
# A line template: pieces a, b, c and which port follows a and b (0 none, 1 source,
# 2 destination): line = time + a + port[i] + b + port[j] + c.
Template = tuple[str, str, str, int, int]
# from_json's template for a flow, its source and destination port texts, and what the line
# depends on besides the key: nothing (KEY_ONLY: the template is kept for the key, a line with
# the same key prints the same), the four policy lists ``{ingress,egress}_{allowed,denied}_by``
# (KEY_AND_POLICIES: drops and policy verdicts with --print-policy-names) or other fields
# (OTHER_FIELDS: the debug capture and socket translation points).
JsonTemplate = tuple[Template, str, str, int]
KEY_ONLY: Final = 0
KEY_AND_POLICIES: Final = 1
OTHER_FIELDS: Final = 2

CACHE_LIMIT: Final = 4096

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_HEAD: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
# How the fraction of a second enters each layout: -1 StampMilli's three digits, 3/6/9 the
# trimmed fraction of RFC3339Milli/Micro/Nano, 0 not at all.
_FRACTION_DIGITS: Final = MappingProxyType(
    {"StampMilli": -1, "RFC3339Milli": 3, "RFC3339Micro": 6, "RFC3339Nano": 9}
)
# Marks where ports go; never in escaped text (escape shows every C0 control as \xNN).
_PORT_MARK: Final = "\x00"
_SRC_MARK: Final = "\x01"
_DST_MARK: Final = "\x02"
_MARKS: Final = re.compile("([\x01\x02])")
# Flow keys most flows lack that the output depends on: a line template's key holds what
# the line reads of them (see rare_key) only when one is present.
_RARE_KEYS: Final = frozenset(
    {
        "source_service",
        "destination_service",
        "source_names",
        "destination_names",
        "ip_trace_id",
        "auth_type",
    }
)
# Event types whose TYPE column reads other fields (debug capture point, socket translation
# point), and those whose VERDICT column reads the policies with --print-policy-names.
_UNCACHED_TYPES: Final = frozenset({fields.TYPE_CAPTURE, fields.TYPE_TRACE_SOCK})
_POLICY_NAME_TYPES: Final = frozenset({fields.TYPE_DROP, fields.TYPE_POLICY_VERDICT})


def _int_or_none(value: object) -> bool:
    """True for the values ``fields.as_int`` reads as themselves: ints (not bools) and None."""
    return value is None or type(value) is int


def _str_or_none(value: object) -> bool:
    return value is None or type(value) is str


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def time_digits(layout: str) -> int:
    """How the fraction of a second enters ``layout``'s text: -1 StampMilli's three digits,
    3/6/9 the trimmed fraction of RFC3339Milli/Micro/Nano, 0 not at all."""
    return _FRACTION_DIGITS.get(normalize_format_name(layout) or DEFAULT_TIME_FORMAT, 0)


def time_base(head: str, layout: str, digits: int) -> str:
    """The text of every canonical time with this ``YYYY-MM-DDTHH:MM:SS`` head, before its
    fraction (see ``make_time_renderer``); "" when such times print ``N/A``."""
    whole = format_time_value(head + "Z", layout)
    if whole == "N/A":
        return ""
    if digits < 0:
        return whole[:-3]  # "Jan  2 15:04:05." without "000"
    if digits > 0:
        return whole[:-1]  # "2006-01-02T15:04:05" without "Z"
    return whole


def make_time_renderer(layout: str) -> TimeRenderer:
    """``format_time_value(value, layout)`` with the work done once per second or millisecond.

    For a canonical ``<head>[.<1-9 ASCII digits>]Z`` value (``<head>`` being
    ``YYYY-MM-DDTHH:MM:SS``) the generic result is the one for ``<head>Z`` with only the
    fraction changed, or ``N/A`` for both: the head decides validity, the digits only the
    fraction. Layouts that show at most milliseconds are also cached whole per
    ``<head>.<3 digits>``. Anything else goes to the generic function.
    """
    digits = time_digits(layout)
    by_milli = digits <= 3  # the text depends on the first three digits at most
    heads: dict[str, str] = {}
    millis: dict[str, str] = {}

    def slow(value: object) -> str:
        if type(value) is not str or len(value) < 20 or value[-1] != "Z":
            return format_time_value(value, layout)
        if len(value) == 20:
            frac = ""
        else:
            frac = value[20:-1]
            if value[19] != "." or len(frac) > 9 or not (frac.isascii() and frac.isdigit()):
                return format_time_value(value, layout)
        head = value[:19]
        base = heads.get(head)
        if base is None:
            if _HEAD.fullmatch(head) is None:
                return format_time_value(value, layout)
            base = time_base(head, layout, digits)
            _remember(heads, head, base)
        if not base:
            text = "N/A"
        elif digits < 0:
            text = base + (frac + "000")[:3]
        elif digits > 0:
            kept = (frac + "000000000")[:digits].rstrip("0")
            text = f"{base}.{kept}Z" if kept else base + "Z"
        else:
            text = base
        if by_milli and len(frac) >= 3:
            _remember(millis, value[:23], text)
        return text

    def render(value: Any) -> str:
        # Hot path: "<head>.<3 digits>" seen before, then 0-6 ASCII digits and "Z". A
        # shorter string cannot equal a key (all keys have 23 characters); anything but a
        # string raises TypeError (None, numbers, dicts), slices to something unhashable
        # (lists) or to no key (tuples, bytes).
        try:
            text = millis[value[:23]]
        except (KeyError, TypeError):
            return slow(value)
        if value[-1] == "Z" and len(value) <= 30:
            rest = value[23:-1]
            if not rest or (rest.isascii() and rest.isdigit()):
                return text
        return slow(value)

    return render


@dataclass(frozen=True, slots=True)
class FastFormatters:
    """See the module docstring."""

    by_fields: FastFormatter
    from_json: FastFormatter
    json_template: Callable[[Mapping[str, Any]], JsonTemplate | None]


def make_fast_formatter(opts: PrinterOptions, colors: Colors) -> FastFormatters:
    """The fast compact formatters for ``opts`` (see the module docstring)."""
    translate = opts.translate_ips
    print_node_name = opts.print_node_name
    print_policy_names = opts.print_policy_names
    render_time = make_time_renderer(opts.time_format)
    colour_identity = colors.identity

    # Host texts (without port, before the port, after the port), by (namespace, pod or
    # service name), by IP, by comma-joined DNS names.
    by_name: dict[tuple[str, str], tuple[str, str, str]] = {}
    by_ip: dict[str, tuple[str, str, str]] = {}
    by_names: dict[str, tuple[str, str, str]] = {}
    identities: dict[int | None, str] = {}
    node_names: dict[str, str] = {}
    # (type, sub_type) | (5, policy_match_type, traffic_direction) | (l7 type, protocol,
    # dns observation source) -> TYPE column
    types: dict[tuple[Any, ...], str] = {}
    # (verdict, is policy verdict) -> VERDICT column (without policy names)
    verdicts: dict[tuple[str | None, bool], str] = {}
    # line-template key (see from_json) -> template
    lines: dict[tuple[Any, ...], Template] = {}

    def host_texts(
        cache: dict[Any, tuple[str, str, str]], key: Any, host: str
    ) -> tuple[str, str, str]:
        """The generic column for an escaped host, without port and split around one."""
        before, _, after = colors.host(
            fields.join_host_port(host, colors.port(_PORT_MARK))
        ).partition(_PORT_MARK)
        texts = (colors.host(host), before, after)
        _remember(cache, key, texts)
        return texts

    def side(
        flow: Mapping[str, Any],
        endpoint: Mapping[str, Any],
        ip: object,
        port: str,
        service_key: str,
        names_key: str,
    ) -> str | None:
        """One host column (``fields.hostnames``/``hostname``), or None to decline."""
        texts = None
        if translate:
            if service_key in flow:
                service = flow[service_key]
                if not isinstance(service, dict):
                    service = _EMPTY
                ns, name = service.get("namespace"), service.get("name")
                pod = endpoint.get("pod_name")
                if not (_str_or_none(ns) and _str_or_none(name) and _str_or_none(pod)):
                    return None
                if pod:
                    name = pod
            else:
                ns, name = endpoint.get("namespace"), endpoint.get("pod_name")
                if not (_str_or_none(ns) and _str_or_none(name)):
                    return None
            if name:
                ns = ns or ""
                key = (ns, name)
                texts = by_name.get(key)
                if texts is None:
                    texts = host_texts(by_name, key, escape(fields._path_join(ns, name)))
            else:
                names = flow.get(names_key)
                if isinstance(names, list) and names:
                    if not all(type(n) is str for n in names):
                        return None
                    joined = ",".join(names)
                    texts = by_names.get(joined)
                    if texts is None:
                        texts = host_texts(by_names, joined, escape(joined))
        if texts is None:
            if ip is None:
                ip = ""
            elif type(ip) is not str:
                return None
            texts = by_ip.get(ip)
            if texts is None:
                texts = host_texts(by_ip, ip, escape(ip))
        if port:
            return texts[1] + port + texts[2]
        return texts[0]

    def identity(value: object) -> str | None:
        if not _int_or_none(value):
            return None
        key = cast("int | None", value)
        text = identities.get(key)
        if text is None:
            text = colour_identity(fields.identity_text(key))
            _remember(identities, key, text)
        return text

    def port_text(ports: Mapping[str, Any], key: str) -> str | None:
        """``fields.ports`` for one side, "" when no port is printed; None to decline."""
        value = ports.get(key)
        if value is None or value == 0:
            return ""
        if type(value) is not int:
            return None
        return str(value)

    def flow_type(flow: Mapping[str, Any], typ: int, sub: int) -> str | None:
        l7 = flow.get("l7")
        if isinstance(l7, dict):
            l7_type = l7.get("type")
            if not _str_or_none(l7_type):
                return None
            if "http" in l7:
                key: tuple[Any, ...] = (l7_type, "http", None)
            elif "dns" in l7:
                dns = l7["dns"]
                source = dns.get("observation_source") if isinstance(dns, dict) else None
                if not _str_or_none(source):
                    return None
                key = (l7_type, "dns", source)
            elif "kafka" in l7:
                key = (l7_type, "kafka", None)
            else:
                key = (l7_type, "l7", None)
            text = types.get(key)
            if text is None:
                sample: dict[str, Any] = {"type": l7_type, key[1]: {}}
                if key[1] == "dns":
                    sample["dns"] = {"observation_source": key[2]}
                text = fields.flow_type({"l7": sample})
                _remember(types, key, text)
            return text
        if typ == fields.TYPE_POLICY_VERDICT:
            match, direction = flow.get("policy_match_type"), flow.get("traffic_direction")
            if not (_int_or_none(match) and _str_or_none(direction)):
                return None
            key = (typ, match, direction)
            sample = {
                "event_type": {"type": typ},
                "policy_match_type": match,
                "traffic_direction": direction,
            }
        elif typ in _UNCACHED_TYPES:
            return fields.flow_type(flow)
        else:
            key = (typ, sub)
            sample = {"event_type": {"type": typ, "sub_type": sub}}
        text = types.get(key)
        if text is None:
            text = fields.flow_type(sample)
            _remember(types, key, text)
        return text

    def verdict(flow: Mapping[str, Any], typ: int) -> str | None:
        if print_policy_names and typ in _POLICY_NAME_TYPES:
            return fields.verdict(flow, colors, print_policy_names=True)
        value = flow.get("verdict")
        if not _str_or_none(value):
            return None
        key = (value, typ == fields.TYPE_POLICY_VERDICT)
        text = verdicts.get(key)
        if text is None:
            text = fields.verdict({"verdict": value, "event_type": {"type": typ}}, colors)
            _remember(verdicts, key, text)
        return text

    def node_name(value: object) -> str | None:
        if value is None:
            return ""
        if type(value) is not str:
            return None
        text = node_names.get(value)
        if text is None:
            text = fields.node_name(value)
            _remember(node_names, value, text)
        return text

    def compose(
        flow: Mapping[str, Any], ip: Mapping[str, Any], src_port: str, dst_port: str
    ) -> str | None:
        """The line after the time (node, hosts, ..., summary) with the ports given as texts
        ("" for none); None to decline."""
        get = flow.get
        src_ep, dst_ep = get("source"), get("destination")
        if not isinstance(src_ep, dict):
            src_ep = _EMPTY
        if not isinstance(dst_ep, dict):
            dst_ep = _EMPTY
        src = side(flow, src_ep, ip.get("source"), src_port, "source_service", "source_names")
        dst = side(
            flow,
            dst_ep,
            ip.get("destination"),
            dst_port,
            "destination_service",
            "destination_names",
        )
        src_id, dst_id = identity(src_ep.get("identity")), identity(dst_ep.get("identity"))
        if src is None or dst is None or src_id is None or dst_id is None:
            return None

        et = get("event_type")
        if isinstance(et, dict):
            typ, sub = et.get("type"), et.get("sub_type")
            if not (_int_or_none(typ) and _int_or_none(sub)):
                return None
            typ, sub = typ or 0, sub or 0
        else:
            typ = sub = 0
        type_text = flow_type(flow, typ, sub)
        verdict_text = verdict(flow, typ)
        if type_text is None or verdict_text is None:
            return None

        if "ip_trace_id" in flow or "auth_type" in flow:
            summary = fields.summary(flow, colors)
        else:
            raw = get("Summary")
            if raw is None:
                summary = ""
            elif type(raw) is not str:
                return None
            else:
                summary = raw if raw.isprintable() else escape(raw)

        reply = get("is_reply")
        if reply is None:
            arrow = "<>"
        elif reply:
            arrow = "<-"
            src, dst, src_id, dst_id = dst, src, dst_id, src_id
        else:
            arrow = "->"

        node = ""
        if print_node_name:
            name = node_name(get("node_name"))
            if name is None:
                return None
            node = f" [{name}]"
        return (
            f"{node}: {src} {src_id} {arrow} {dst} {dst_id} {type_text} {verdict_text} "
            f"({summary})\n"
        )

    def by_fields(flow: Mapping[str, Any]) -> str | None:
        ip = flow.get("IP")
        if not isinstance(ip, dict):
            return None  # ethernet-only or no addresses: the generic path
        # fields.ports: the first of TCP, UDP, SCTP present in l4
        l4 = flow.get("l4")
        src_port = dst_port = ""
        if isinstance(l4, dict):
            if "TCP" in l4:
                ports = l4["TCP"]
            elif "UDP" in l4:
                ports = l4["UDP"]
            elif "SCTP" in l4:
                ports = l4["SCTP"]
            else:
                ports = _EMPTY
            if isinstance(ports, dict):
                sp, dp = port_text(ports, "source_port"), port_text(ports, "destination_port")
                if sp is None or dp is None:
                    return None
                src_port, dst_port = sp, dp
        rest = compose(flow, ip, src_port, dst_port)
        if rest is None:
            return None
        return render_time(flow.get("time")) + rest

    def new_template(
        key: tuple[Any, ...], flow: Mapping[str, Any], ip: Mapping[str, Any], typ: object
    ) -> tuple[Template, int] | None:
        """Compose the line with marks for the ports, split it there, and keep it unless the
        line depends on more than the key holds (then say on what, see ``JsonTemplate``)."""
        rest = compose(flow, ip, _SRC_MARK if key[-2] else "", _DST_MARK if key[-1] else "")
        if rest is None:
            return None
        pieces = _MARKS.split(rest)
        pieces += [""] * (5 - len(pieces))
        first = 1 if pieces[1] == _SRC_MARK else 2 if pieces[1] == _DST_MARK else 0
        second = 1 if pieces[3] == _SRC_MARK else 2 if pieces[3] == _DST_MARK else 0
        template = (pieces[0], pieces[2], pieces[4], first, second)
        # the TYPE or VERDICT column reads fields the key lacks: the debug capture point and
        # socket translation point, or the policies (fields.verdict)
        if typ in _UNCACHED_TYPES:
            return template, OTHER_FIELDS
        if print_policy_names and typ in _POLICY_NAME_TYPES:
            return template, KEY_AND_POLICIES
        _remember(lines, key, template)
        return template, KEY_ONLY

    def rare_key(flow: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """What the line reads of the rare keys present, by name; None for a shape left to
        ``by_fields`` (a value of a type the generic code would read differently)."""
        parts: list[Any] = []
        for name in sorted(_RARE_KEYS & flow.keys()):
            value = flow[name]
            if name.endswith("_names"):
                if type(value) is not list:
                    return None
                value = tuple(value)  # its items are checked where they are used
            elif name.endswith("_service"):
                if type(value) is not dict:
                    return None
                value = (value.get("namespace"), value.get("name"))
            elif name == "ip_trace_id":
                if type(value) is not dict:
                    return None
                value = value.get("trace_id")
                if not _int_or_none(value):
                    return None
            elif type(value) is not str:  # auth_type
                return None
            parts += (name, value)
        return tuple(parts)

    def json_template(flow: Mapping[str, Any]) -> JsonTemplate | None:
        """The line template of a JSON-decoded flow, its port texts and whether the template
        is kept for its key; None for a flow left to ``by_fields``."""
        # Containers are plain dicts (and lists): subscripting a str, list or number raises
        # TypeError, a missing key KeyError; both mean "not the common shape".
        try:
            ip = flow["IP"]
            ip_src, ip_dst = ip["source"], ip["destination"]
            src_ep, dst_ep = flow["source"], flow["destination"]
            l4, et = flow["l4"], flow["event_type"]
            if "TCP" in l4:
                ports = l4["TCP"]
            elif "UDP" in l4:
                ports = l4["UDP"]
            elif "SCTP" in l4:
                ports = l4["SCTP"]
            else:
                ports = None
            src_port = dst_port = ""
            if ports is not None:
                sp, dp = ports["source_port"], ports["destination_port"]
                if type(sp) is not int or type(dp) is not int:
                    return None
                if sp:
                    src_port = str(sp)
                if dp:
                    dst_port = str(dp)
            if not (  # _RARE_KEYS (a chain of `in` costs less than a set operation)
                "source_names" in flow
                or "destination_names" in flow
                or "source_service" in flow
                or "destination_service" in flow
                or "ip_trace_id" in flow
                or "auth_type" in flow
            ):
                rare = None
            else:
                rare = rare_key(flow)
                if rare is None:
                    return None
            if "l7" in flow:
                l7 = flow["l7"]
                if type(l7) is not dict:
                    return None
                dns = l7.get("dns")
                if dns is None:
                    dns = _EMPTY
                elif type(dns) is not dict:
                    return None
                l7_key: tuple[Any, ...] | None = (
                    l7.get("type"),
                    "http" in l7,
                    "dns" in l7,
                    "kafka" in l7,
                    dns.get("observation_source"),
                )
            else:
                l7_key = None
            typ = et["type"]
            key = (
                ip_src,
                ip_dst,
                src_ep.get("namespace"),
                src_ep.get("pod_name"),
                src_ep.get("identity"),
                dst_ep.get("namespace"),
                dst_ep.get("pod_name"),
                dst_ep.get("identity"),
                typ,
                et.get("sub_type"),
                flow.get("verdict"),
                flow.get("is_reply"),
                flow.get("Summary"),
                flow.get("policy_match_type"),
                flow.get("traffic_direction"),
                l7_key,
                rare,
                flow.get("node_name") if print_node_name else None,
                src_port != "",
                dst_port != "",
            )
            template = lines.get(key)
        except (KeyError, TypeError, AttributeError):
            return None
        if template is not None:
            return template, src_port, dst_port, KEY_ONLY
        made = new_template(key, flow, ip, typ)
        if made is None:
            return None
        return made[0], src_port, dst_port, made[1]

    def from_json(flow: Mapping[str, Any]) -> str | None:
        found = json_template(flow)
        if found is None:
            return by_fields(flow)
        (a, b, c, first, second), src_port, dst_port, _ = found
        port = ("", src_port, dst_port)
        return f"{render_time(flow.get('time'))}{a}{port[first]}{b}{port[second]}{c}"

    return FastFormatters(by_fields, from_json, json_template)
