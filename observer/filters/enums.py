"""Enum tables of the ``flow`` package that FlowFilter fields use (names <-> numbers).

Numbers and names as in flow.proto of Cilium v1.19.4 (see the project's Hubble reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from observer.parser.dropreasons import DROP_REASON_NAMES


@dataclass(frozen=True, slots=True)
class EnumTable:
    """A protobuf enum: its type name and both directions of its name/number mapping."""

    name: str
    values: Sequence[tuple[str, int]]
    by_name: Mapping[str, int] = field(init=False, repr=False)
    by_number: Mapping[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_number: dict[int, str] = {}
        for name, number in self.values:
            by_number.setdefault(number, name)
        object.__setattr__(self, "by_name", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "by_number", MappingProxyType(by_number))


VERDICT: Final = EnumTable(
    "Verdict",
    (
        ("VERDICT_UNKNOWN", 0),
        ("FORWARDED", 1),
        ("DROPPED", 2),
        ("ERROR", 3),
        ("AUDIT", 4),
        ("REDIRECTED", 5),
        ("TRACED", 6),
        ("TRANSLATED", 7),
    ),
)
VERDICT_DROPPED: Final = 2

TRAFFIC_DIRECTION: Final = EnumTable(
    "TrafficDirection",
    (("TRAFFIC_DIRECTION_UNKNOWN", 0), ("INGRESS", 1), ("EGRESS", 2)),
)

IP_VERSION: Final = EnumTable("IPVersion", (("IP_NOT_USED", 0), ("IPv4", 1), ("IPv6", 2)))

# One table of drop reasons for the whole project: observer/parser/dropreasons.py.
DROP_REASON: Final = EnumTable(
    "DropReason", tuple((name, code) for code, name in DROP_REASON_NAMES.items())
)
