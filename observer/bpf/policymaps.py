"""The policy maps of bpf/lib/policy.h: layouts, packing, and generation-switched writes.

Layout mirrors (checked against the object's BTF by tests/privileged/policy/test_bpf_abi.py):

* ``hb_policy_state`` (array, 1 entry): ``{u32 generation; u32 flags}``: which of the two
  generations the datapath reads.
* ``hb_ep_policy`` (hash): ``{u32 ep_id; u32 generation}`` -> ``{u32 flags; u32 _pad}``,
  flags ``EP_INGRESS | EP_EGRESS | EP_AUDIT``; no entry = nothing enforced.
* ``hb_policy`` (LPM trie): ``{u32 prefixlen; u32 ep_id; u32 identity; u8 generation;
  u8 direction; u8 _pad; u8 protocol; be16 dport; u16 _pad2}`` -> ``{u8 action; u8
  match_type; u8 lpm_len; u8 _pad; u32 rule_id}``. ``prefixlen`` = 88 exact bits + the
  compiler key's prefix over (protocol, port).
* ``hb_ipcache`` (LPM trie): ``{u32 prefixlen; u8 generation; u8 family; u16 _pad;
  u8 addr[16]}`` -> ``{u32 identity; u32 flags}``; ``prefixlen`` = 32 + the prefix length.

:class:`DatapathImage` is one generation's content, free of generation and endpoint
numbers where it can be: policy entries are packed with ``ep_id`` and ``generation`` 0 and
grouped per endpoint, so endpoints with the same policy share one dict (and the diff of an
unchanged endpoint is an ``is`` test). :class:`PolicyMaps` writes an image into the
generation the datapath does not read and then flips ``hb_policy_state.generation``: the
only write that changes what packets see, so a policy change is atomic for the whole node.
It remembers what each generation holds (read back from the kernel on start, so a restarted
agent continues where the previous one stopped) and writes only the differences.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from observer.bpf.loader import BpfMap, BpfObject

log = logging.getLogger(__name__)

STATE_MAP: Final = "hb_policy_state"
EP_POLICY_MAP: Final = "hb_ep_policy"
POLICY_MAP: Final = "hb_policy"
IPCACHE_MAP: Final = "hb_ipcache"

# hb_ep_policy.flags
EP_INGRESS: Final = 1 << 0
EP_EGRESS: Final = 1 << 1
EP_AUDIT: Final = 1 << 2

# hb_policy_entry.action
ACTION_ALLOW: Final = 1
ACTION_DENY: Final = 2
ACTION_AUDIT: Final = 3

#: policy_rule_id of a default-deny verdict (no entry decided).
RULE_DEFAULT_DENY: Final = 0xFFFFFFFF
DROP_POLICY: Final = 133
DROP_POLICY_DENY: Final = 181

POLICY_EXACT_BITS: Final = 88
IPCACHE_EXACT_BITS: Final = 32

POLICY_STATE: Final = struct.Struct("<II")
POLICY_STATE_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("generation", 0, 4),
    ("flags", 4, 4),
)
EP_POLICY_KEY: Final = struct.Struct("<II")
EP_POLICY_KEY_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("ep_id", 0, 4),
    ("generation", 4, 4),
)
EP_POLICY: Final = struct.Struct("<II")
EP_POLICY_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("flags", 0, 4),
    ("_pad", 4, 4),
)
# dport is big-endian: packed as 2 raw bytes
POLICY_KEY: Final = struct.Struct("<IIIBBBB2sH")
POLICY_KEY_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("prefixlen", 0, 4),
    ("ep_id", 4, 4),
    ("identity", 8, 4),
    ("generation", 12, 1),
    ("direction", 13, 1),
    ("_pad", 14, 1),
    ("protocol", 15, 1),
    ("dport", 16, 2),
    ("_pad2", 18, 2),
)
POLICY_ENTRY: Final = struct.Struct("<BBBBI")
POLICY_ENTRY_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("action", 0, 1),
    ("match_type", 1, 1),
    ("lpm_len", 2, 1),
    ("_pad", 3, 1),
    ("rule_id", 4, 4),
)
IPCACHE_KEY: Final = struct.Struct("<IBBH16s")
IPCACHE_KEY_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("prefixlen", 0, 4),
    ("generation", 4, 1),
    ("family", 5, 1),
    ("_pad", 6, 2),
    ("addr", 8, 16),
)
IPCACHE_VALUE: Final = struct.Struct("<II")
IPCACHE_VALUE_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("identity", 0, 4),
    ("flags", 4, 4),
)

_ZERO_KEY: Final = struct.pack("<I", 0)
# byte offsets patched per endpoint / generation
_PK_EP = slice(4, 8)
_PK_GEN = 12
_IC_GEN = 4

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- packing (pure)


def pack_policy_key(identity: int, direction: int, protocol: int, port: int, lpm_len: int) -> bytes:
    """A policy key with ep_id 0 and generation 0 (patched when written)."""
    return POLICY_KEY.pack(
        POLICY_EXACT_BITS + lpm_len,
        0,
        identity,
        0,
        direction,
        0,
        protocol,
        port.to_bytes(2, "big"),
        0,
    )


def pack_policy_entry(action: int, match_type: int, lpm_len: int, rule_id: int) -> bytes:
    return POLICY_ENTRY.pack(action, match_type, lpm_len, 0, rule_id)


@dataclass(frozen=True, slots=True)
class PolicyKeyFields:
    prefixlen: int
    ep_id: int
    identity: int
    generation: int
    direction: int
    protocol: int
    port: int


def unpack_policy_key(raw: bytes) -> PolicyKeyFields:
    plen, ep_id, identity, gen, direction, _pad, proto, dport, _pad2 = POLICY_KEY.unpack(raw)
    return PolicyKeyFields(
        plen, ep_id, identity, gen, direction, proto, int.from_bytes(dport, "big")
    )


def pack_ipcache_key(network: IPNetwork) -> bytes:
    """An ipcache key for ``network`` with generation 0."""
    family = network.version
    return IPCACHE_KEY.pack(
        IPCACHE_EXACT_BITS + network.prefixlen, 0, family, 0, network.network_address.packed
    )


def unpack_ipcache_key(raw: bytes) -> tuple[int, IPNetwork]:
    """(generation, network) of an ipcache key."""
    plen, gen, family, _pad, addr = IPCACHE_KEY.unpack(raw)
    bits = plen - IPCACHE_EXACT_BITS
    ip = ipaddress.IPv4Address(addr[:4]) if family == 4 else ipaddress.IPv6Address(addr)
    return gen, ipaddress.ip_network((ip, bits))


def pack_ipcache_value(identity: int) -> bytes:
    return IPCACHE_VALUE.pack(identity, 0)


def _policy_key_for(base: bytes, ep_id: int, gen: int) -> bytes:
    return base[:4] + ep_id.to_bytes(4, "little") + base[8:12] + bytes((gen,)) + base[13:]


def _ipcache_key_for(base: bytes, gen: int) -> bytes:
    return base[:4] + bytes((gen,)) + base[5:]


# --------------------------------------------------------------------------- image


@dataclass(frozen=True, slots=True)
class DatapathImage:
    """One generation's content. ``entries[ep_id]`` maps packed keys (ep_id and generation
    0) to packed values; ``flags[ep_id]`` is non-zero for every endpoint listed; ``ipcache``
    maps packed keys (generation 0) to packed values."""

    flags: Mapping[int, int] = field(default_factory=dict)
    entries: Mapping[int, Mapping[bytes, bytes]] = field(default_factory=dict)
    ipcache: Mapping[bytes, bytes] = field(default_factory=dict)

    def entry_count(self) -> int:
        return sum(len(e) for e in self.entries.values())

    def same_as(self, other: DatapathImage) -> bool:
        if self is other:
            return True
        if self.flags != other.flags or self.ipcache != other.ipcache:
            return False
        if self.entries.keys() != other.entries.keys():
            return False
        return all(
            mine is other.entries[ep] or mine == other.entries[ep]
            for ep, mine in self.entries.items()
        )


EMPTY_IMAGE: Final = DatapathImage(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class WriteStats:
    """What one switch wrote: map writes (upserts + deletes) and endpoints touched."""

    writes: int = 0
    endpoints: frozenset[int] = frozenset()
    switched: bool = False
    generation: int = 0


def _dict_diff(
    old: Mapping[bytes, bytes], new: Mapping[bytes, bytes]
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    if old is new:
        return [], []
    upserts = [(k, v) for k, v in new.items() if old.get(k) != v]
    deletes = [k for k in old if k not in new]
    return upserts, deletes


# --------------------------------------------------------------------------- maps


class PolicyMaps:
    """The four policy maps of a loaded datapath object, written by generation switch.

    Not thread-safe: one writer (the agent's policy engine, under its lock).
    """

    def __init__(self, obj: BpfObject) -> None:
        self._state = obj.map(STATE_MAP)
        self._eps = obj.map(EP_POLICY_MAP)
        self._policy = obj.map(POLICY_MAP)
        self._ipcache = obj.map(IPCACHE_MAP)
        # What each generation holds; None = unknown (read back before writing there).
        self._images: list[DatapathImage | None] = [None, None]

    # -- generation ------------------------------------------------------
    def generation(self) -> int:
        raw = self._state.lookup(_ZERO_KEY)
        if raw is None:
            return 0
        gen, _flags = POLICY_STATE.unpack(raw)
        return int(gen) & 1

    def _set_generation(self, gen: int) -> None:
        self._state.update(_ZERO_KEY, POLICY_STATE.pack(gen, 0))

    def image(self, gen: int) -> DatapathImage:
        """What generation ``gen`` holds (read back from the kernel the first time)."""
        img = self._images[gen]
        if img is None:
            img = self.read_image(gen)
            self._images[gen] = img
        return img

    def active_image(self) -> DatapathImage:
        return self.image(self.generation())

    def read_image(self, gen: int) -> DatapathImage:
        """Read generation ``gen`` back from the maps."""
        flags: dict[int, int] = {}
        for key, value in self._eps.items():
            ep_id, kgen = EP_POLICY_KEY.unpack(key)
            if kgen == gen:
                flags[ep_id] = EP_POLICY.unpack(value)[0]
        entries: dict[int, dict[bytes, bytes]] = {}
        for key, value in self._policy.items():
            if key[_PK_GEN] != gen:
                continue
            ep_id = int.from_bytes(key[_PK_EP], "little")
            entries.setdefault(ep_id, {})[_policy_key_for(key, 0, 0)] = value
        ipcache: dict[bytes, bytes] = {}
        for key, value in self._ipcache.items():
            if key[_IC_GEN] == gen:
                ipcache[_ipcache_key_for(key, 0)] = value
        return DatapathImage(flags, entries, ipcache)

    # -- writes ----------------------------------------------------------
    def switch_to(
        self, target: DatapathImage, before_flip: Callable[[], None] | None = None
    ) -> WriteStats:
        """Make ``target`` what the datapath enforces.

        Nothing happens if the active generation already holds it. Otherwise the inactive
        generation is brought to ``target`` (new entries first, then removals, all while no
        packet reads that generation), ``before_flip`` runs (the agent persists its state
        there; an exception aborts before anything is enforced), and the generation flips.
        """
        active = self.generation()
        if self.image(active).same_as(target):
            return WriteStats(generation=active)
        gen = active ^ 1
        current = self.image(gen)
        self._images[gen] = None  # unknown until every write below succeeded
        writes = 0
        touched: set[int] = set()
        # policy entries
        for ep_id in sorted(set(current.entries) | set(target.entries)):
            upserts, deletes = _dict_diff(
                current.entries.get(ep_id, {}), target.entries.get(ep_id, {})
            )
            if not upserts and not deletes:
                continue
            touched.add(ep_id)
            for key, value in upserts:
                self._policy.update(_policy_key_for(key, ep_id, gen), value)
            for key in deletes:
                self._policy.delete(_policy_key_for(key, ep_id, gen))
            writes += len(upserts) + len(deletes)
        # enforcement flags
        for ep_id in sorted(set(current.flags) | set(target.flags)):
            want = target.flags.get(ep_id, 0)
            if current.flags.get(ep_id, 0) == want:
                continue
            touched.add(ep_id)
            key = EP_POLICY_KEY.pack(ep_id, gen)
            if want:
                self._eps.update(key, EP_POLICY.pack(want, 0))
            else:
                self._eps.delete(key)
            writes += 1
        # ipcache
        upserts, deletes = _dict_diff(current.ipcache, target.ipcache)
        for key, value in upserts:
            self._ipcache.update(_ipcache_key_for(key, gen), value)
        for key in deletes:
            self._ipcache.delete(_ipcache_key_for(key, gen))
        writes += len(upserts) + len(deletes)
        self._images[gen] = target
        if before_flip is not None:
            before_flip()
        self._set_generation(gen)
        log.debug("policy generation %d enforced (%d map writes)", gen, writes)
        return WriteStats(writes, frozenset(touched), True, gen)

    def clear(self) -> None:
        """Remove every entry of both generations and enforce generation 0 (nothing)."""
        for m in (self._policy, self._ipcache, self._eps):
            for key in list(m.keys()):
                m.delete(key)
        self._set_generation(0)
        self._images = [EMPTY_IMAGE, EMPTY_IMAGE]

    @staticmethod
    def maps_of(obj: BpfObject) -> dict[str, BpfMap]:
        return {name: obj.map(name) for name in (STATE_MAP, EP_POLICY_MAP, POLICY_MAP, IPCACHE_MAP)}


__all__ = [
    "ACTION_ALLOW",
    "ACTION_AUDIT",
    "ACTION_DENY",
    "DROP_POLICY",
    "DROP_POLICY_DENY",
    "EMPTY_IMAGE",
    "EP_AUDIT",
    "EP_EGRESS",
    "EP_INGRESS",
    "RULE_DEFAULT_DENY",
    "DatapathImage",
    "PolicyKeyFields",
    "PolicyMaps",
    "WriteStats",
    "pack_ipcache_key",
    "pack_ipcache_value",
    "pack_policy_entry",
    "pack_policy_key",
    "unpack_ipcache_key",
    "unpack_policy_key",
]
