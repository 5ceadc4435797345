"""Loading the datapath object, its maps, tc attachment and the datapath's settings.

``BpfObject.open()`` opens a compiled object (bpf/build/*.o), optionally resizes the ring
buffer, and loads it. With a pin root, maps declared ``LIBBPF_PIN_BY_NAME`` are pinned
under it by name and reused by the next open (an agent restart keeps its conntrack table
and counters); a pinned map whose shape no longer matches (e.g. a new ring size) is
replaced. Without a pin root nothing is pinned.

tc attachment goes through libbpf's netlink helpers: ``attach_tc`` creates the clsact
qdisc if needed and attaches with BPF_TC_F_REPLACE at a fixed (handle, priority), so
attaching again, after an agent restart too, replaces the filter instead of adding one.

The map value layouts of bpf/lib/maps.h and bpf/lib/conntrack.h are mirrored here
(``CONFIG``, ``ENDPOINT_INFO``, ``CT_KEY``, ``CT_VALUE``); the privileged ABI test checks
them against the object's BTF.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from observer.bpf import _libbpf
from observer.bpf._libbpf import Libbpf, libbpf
from observer.errors import BpfError, ConfigError

log = logging.getLogger(__name__)

# Names in bpf/lib/maps.h, bpf/lib/conntrack.h and bpf/datapath.c.
RING_MAP: Final = "hb_events"
LOST_MAP: Final = "hb_lost"
PARSE_ERRORS_MAP: Final = "hb_parse_errors"
CONFIG_MAP: Final = "hb_config"
ENDPOINTS_MAP: Final = "hb_endpoints"
CT_MAP: Final = "hb_ct"
PROG_FROM_ENDPOINT: Final = "hb_from_endpoint"
PROG_TO_ENDPOINT: Final = "hb_to_endpoint"

DEFAULT_RING_BYTES: Final = 4 * 1024 * 1024

# hb_config.aggregation_level
AGG_NONE: Final = 0
AGG_MEDIUM: Final = 1
DEFAULT_REPORT_INTERVAL_NS: Final = 5_000_000_000

# struct hb_config
CONFIG: Final = struct.Struct("<IIQQ")
CONFIG_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("aggregation_level", 0, 4),
    ("_pad", 4, 4),
    ("report_interval_ns", 8, 8),
    ("wakeup_bytes", 16, 8),
)

# struct hb_endpoint_info (value of hb_endpoints, key: u32 ifindex)
ENDPOINT_KEY: Final = struct.Struct("<I")
ENDPOINT_INFO: Final = struct.Struct("<IIII")
ENDPOINT_INFO_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("ep_id", 0, 4),
    ("identity", 4, 4),
    ("flags", 8, 4),
    ("_pad", 12, 4),
)

# struct hb_ct_key / hb_ct_value
CT_KEY: Final = struct.Struct("<16s16sHHBBHI")
CT_KEY_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("saddr", 0, 16),
    ("daddr", 16, 16),
    ("sport", 32, 2),
    ("dport", 34, 2),
    ("proto", 36, 1),
    ("ip_version", 37, 1),
    ("_pad", 38, 2),
    ("ifindex", 40, 4),
)
CT_VALUE: Final = struct.Struct("<Q2Q2Q2I2BB5x")
CT_VALUE_FIELDS: Final[tuple[tuple[str, int, int], ...]] = (
    ("created_ns", 0, 8),
    ("last_report_ns", 8, 16),
    ("bytes", 24, 16),
    ("pkts", 40, 8),
    ("flags_seen", 48, 2),
    ("closing", 50, 1),
    ("_pad", 51, 5),
)

# enum hb_parse_err in bpf/lib/parse.h: index -> name (index 0 is unused).
PARSE_ERRORS: Final = (
    "ok",
    "eth",
    "vlan",
    "ipv4",
    "ipv6",
    "ipv6_ext",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "sctp",
)

Direction = Literal["ingress", "egress"]
_ATTACH_POINTS: Final = {"ingress": _libbpf.BPF_TC_INGRESS, "egress": _libbpf.BPF_TC_EGRESS}


class BpfMap:
    """One map of a loaded object, by fd. Keys and values are bytes of the exact sizes.

    For per-CPU maps a value is one slot per possible CPU, each rounded up to 8 bytes:
    ``lookup`` returns that whole buffer, ``lookup_percpu`` the list of per-CPU values.
    The fd belongs to the object: a BpfMap is valid while its BpfObject is open.
    """

    def __init__(
        self,
        name: str,
        fd: int,
        map_type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        ncpus: int,
        lib: Libbpf,
    ) -> None:
        self.name = name
        self._fd: int | None = fd
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.percpu = map_type in _libbpf.PERCPU_MAP_TYPES
        self.ncpus = ncpus
        self._slot = (value_size + 7) & ~7
        self._lib = lib

    @property
    def fd(self) -> int:
        """The map's fd (owned by the BpfObject)."""
        if self._fd is None:
            raise BpfError(errno.EBADF, f"use map {self.name} of a closed BPF object")
        return self._fd

    def _invalidate(self) -> None:
        self._fd = None

    @property
    def value_buffer_size(self) -> int:
        """Bytes a lookup returns / an update takes (all CPUs for per-CPU maps)."""
        return self._slot * self.ncpus if self.percpu else self.value_size

    def _key(self, key: bytes, op: str) -> bytes:
        if len(key) != self.key_size:
            raise BpfError(
                errno.EINVAL,
                f"{op} {self.name}: key of {len(key)} bytes, map key is {self.key_size}",
            )
        return key

    def update(self, key: bytes, value: bytes, flags: int = _libbpf.BPF_ANY) -> None:
        if len(value) != self.value_buffer_size:
            raise BpfError(
                errno.EINVAL,
                f"update {self.name}: value of {len(value)} bytes, map value is {self.value_buffer_size}",
            )
        self._lib.map_update_elem(
            self.fd, self._key(key, "update"), value, flags, f"update {self.name}"
        )

    def lookup(self, key: bytes) -> bytes | None:
        return self._lib.map_lookup_elem(
            self.fd, self._key(key, "lookup"), self.value_buffer_size, f"lookup in {self.name}"
        )

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        """One value per possible CPU (per-CPU maps only), or None if the key is absent."""
        if not self.percpu:
            raise BpfError(errno.EINVAL, f"lookup_percpu in {self.name}: not a per-CPU map")
        raw = self.lookup(key)
        if raw is None:
            return None
        return [raw[i * self._slot : i * self._slot + self.value_size] for i in range(self.ncpus)]

    def delete(self, key: bytes) -> bool:
        """True if the key was there."""
        return self._lib.map_delete_elem(
            self.fd, self._key(key, "delete"), f"delete from {self.name}"
        )

    def keys(self) -> Iterator[bytes]:
        key: bytes | None = None
        while True:
            key = self._lib.map_get_next_key(self.fd, key, self.key_size, f"iterate {self.name}")
            if key is None:
                return
            yield key

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs; keys deleted while iterating are skipped."""
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value


class BpfObject:
    """A loaded BPF object. Use as a context manager; ``close()`` is idempotent.

    Closing releases our fds only: programs attached to tc stay attached (the kernel
    holds them) and pinned maps stay pinned.
    """

    def __init__(
        self, path: Path, pin_root: Path | None, handle: int, lib: Libbpf, ncpus: int
    ) -> None:
        self.path = path
        self.pin_root = pin_root
        self._obj: int | None = handle
        self._lib = lib
        self._ncpus = ncpus
        self._maps: dict[str, BpfMap] = {}

    @classmethod
    def open(cls, path: Path, pin_root: Path | None, ring_bytes: int | None = None) -> BpfObject:
        """Open ``path``, resize the ring buffer to ``ring_bytes`` if given, and load.

        ``ring_bytes`` must be a power of two and a multiple of the page size.
        """
        lib = libbpf()
        ncpus = lib.num_possible_cpus()
        if ring_bytes is not None:
            _check_ring_bytes(ring_bytes)
        if not path.is_file():
            raise BpfError(errno.ENOENT, f"open BPF object {path}")
        if pin_root is not None:
            try:
                pin_root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BpfError(e.errno or errno.EIO, f"create pin root {pin_root}") from e
        handle = lib.object_open_file(str(path), str(pin_root) if pin_root is not None else None)
        obj = cls(path, pin_root, handle, lib, ncpus)
        try:
            obj._prepare(ring_bytes)
            lib.object_load(handle, f"load BPF object {path}")
        except BaseException:
            obj.close()
            raise
        return obj

    def _prepare(self, ring_bytes: int | None) -> None:
        lib = self._lib
        for m in lib.maps(self._handle):
            name = lib.map_name(m)
            if name == RING_MAP and ring_bytes is not None:
                lib.map_set_max_entries(m, ring_bytes, f"resize {name} to {ring_bytes} bytes")
            if self.pin_root is None:
                if lib.map_pin_path(m) is not None:
                    lib.map_set_pin_path(m, None, f"unpin {name}")
                continue
            pin = lib.map_pin_path(m)
            if pin is not None and os.path.exists(pin):
                self._drop_incompatible_pin(m, name, pin)

    def _drop_incompatible_pin(self, m: int, name: str, pin: str) -> None:
        """Unlink a pinned map that libbpf would refuse to reuse (different shape)."""
        lib = self._lib
        fd = lib.obj_get(pin)
        try:
            info = lib.map_info(fd, f"inspect pinned {pin}")
        finally:
            os.close(fd)
        want = (
            lib.map_type(m),
            lib.map_key_size(m),
            lib.map_value_size(m),
            lib.map_max_entries(m),
            lib.map_flags(m),
        )
        have = (info.type, info.key_size, info.value_size, info.max_entries, info.map_flags)
        if want != have:
            log.warning(
                "pinned map %s does not match the object (type, key, value, max_entries, flags: "
                "pinned %s, object %s): replacing it",
                pin,
                have,
                want,
            )
            os.unlink(pin)

    @property
    def _handle(self) -> int:
        if self._obj is None:
            raise BpfError(errno.EBADF, f"use closed BPF object {self.path}")
        return self._obj

    @property
    def closed(self) -> bool:
        return self._obj is None

    def prog_fd(self, name: str) -> int:
        prog = self._lib.find_program(self._handle, name)
        return self._lib.program_fd(prog, f"get fd of program {name}")

    def map_fd(self, name: str) -> int:
        m = self._lib.find_map(self._handle, name)
        return self._lib.map_fd(m, f"get fd of map {name}")

    def map(self, name: str) -> BpfMap:
        cached = self._maps.get(name)
        if cached is not None:
            self._handle  # noqa: B018  (raises once closed)
            return cached
        lib = self._lib
        m = lib.find_map(self._handle, name)
        bm = BpfMap(
            name,
            lib.map_fd(m, f"get fd of map {name}"),
            lib.map_type(m),
            lib.map_key_size(m),
            lib.map_value_size(m),
            lib.map_max_entries(m),
            self._ncpus,
            lib,
        )
        self._maps[name] = bm
        return bm

    def map_names(self) -> list[str]:
        return [self._lib.map_name(m) for m in self._lib.maps(self._handle)]

    def unpin_maps(self) -> None:
        """Remove the pins of this object's pinned maps (the maps live while in use)."""
        for m in self._lib.maps(self._handle):
            pin = self._lib.map_pin_path(m)
            if pin is not None and os.path.exists(pin):
                os.unlink(pin)

    def close(self) -> None:
        if self._obj is None:
            return
        obj, self._obj = self._obj, None
        for m in self._maps.values():
            m._invalidate()
        self._maps.clear()
        self._lib.object_close(obj)

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _check_ring_bytes(n: int) -> None:
    if n < mmap.PAGESIZE or n & (n - 1) or n % mmap.PAGESIZE:
        raise ConfigError(
            f"ring buffer size {n}: must be a power of two and a multiple of the page size ({mmap.PAGESIZE})"
        )


# --- tc ----------------------------------------------------------------------------


def _attach_point(direction: str) -> int:
    try:
        return _ATTACH_POINTS[direction]
    except KeyError:
        raise ConfigError(f"tc direction {direction!r}: must be 'ingress' or 'egress'") from None


def attach_tc(
    ifindex: int,
    ifname: str,
    direction: Direction,
    prog_fd: int,
    handle: int = 1,
    priority: int = 1,
) -> None:
    """Attach ``prog_fd`` (direct action) at tc ``direction`` of the interface.

    Creates the clsact qdisc if missing; replaces whatever filter sits at
    (handle, priority), so attaching twice leaves one filter.
    """
    lib = libbpf()
    hook = lib.tc_hook(ifindex, _attach_point(direction))
    lib.tc_hook_create(hook, f"create clsact qdisc on {ifname}")
    opts = lib.tc_opts(handle, priority, prog_fd=prog_fd, flags=_libbpf.BPF_TC_F_REPLACE)
    lib.tc_attach(hook, opts, f"attach tc {direction} on {ifname}")


def detach_tc(
    ifindex: int, ifname: str, direction: Direction, handle: int = 1, priority: int = 1
) -> bool:
    """Remove the filter at (handle, priority); False if there was none."""
    if query_tc(ifindex, ifname, direction, handle, priority) is None:
        return False
    lib = libbpf()
    hook = lib.tc_hook(ifindex, _attach_point(direction))
    return lib.tc_detach(hook, lib.tc_opts(handle, priority), f"detach tc {direction} on {ifname}")


def query_tc(
    ifindex: int, ifname: str, direction: Direction, handle: int = 1, priority: int = 1
) -> int | None:
    """The id of the program attached at (handle, priority), or None."""
    lib = libbpf()
    hook = lib.tc_hook(ifindex, _attach_point(direction))
    try:
        return lib.tc_query(
            hook, lib.tc_opts(handle, priority), f"query tc {direction} on {ifname}"
        )
    except BpfError as e:
        if e.errno == errno.EINVAL:  # no clsact qdisc, or no filter chain left on it
            return None
        raise


def remove_clsact(ifindex: int, ifname: str) -> None:
    """Delete the interface's clsact qdisc with every filter on it (ingress and egress)."""
    lib = libbpf()
    hook = lib.tc_hook(ifindex, _libbpf.BPF_TC_INGRESS | _libbpf.BPF_TC_EGRESS)
    try:
        with lib.quiet():
            lib.tc_hook_destroy(hook, f"remove clsact qdisc on {ifname}")
    except BpfError as e:
        if e.errno not in (errno.ENOENT, errno.EINVAL):
            raise


# --- settings, endpoints, counters ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatapathConfig:
    """The hb_config entry. ``wakeup_bytes=None`` means a quarter of the ring."""

    aggregation_level: int = AGG_MEDIUM
    report_interval_ns: int = DEFAULT_REPORT_INTERVAL_NS
    wakeup_bytes: int | None = None

    def pack(self, ring_bytes: int) -> bytes:
        if self.aggregation_level not in (AGG_NONE, AGG_MEDIUM):
            raise ConfigError(
                f"aggregation level {self.aggregation_level}: must be {AGG_NONE} or {AGG_MEDIUM}"
            )
        if self.report_interval_ns <= 0:
            raise ConfigError(f"report interval {self.report_interval_ns} ns: must be positive")
        wakeup = ring_bytes // 4 if self.wakeup_bytes is None else self.wakeup_bytes
        if wakeup < 0:
            raise ConfigError(f"wakeup bytes {wakeup}: must not be negative")
        return CONFIG.pack(self.aggregation_level, 0, self.report_interval_ns, wakeup)


def write_config(obj: BpfObject, config: DatapathConfig) -> None:
    m = obj.map(CONFIG_MAP)
    ring_bytes = obj.map(RING_MAP).max_entries
    m.update(struct.pack("<I", 0), config.pack(ring_bytes))


def read_config(obj: BpfObject) -> DatapathConfig | None:
    """The written settings, or None if never written (the datapath uses its defaults)."""
    raw = obj.map(CONFIG_MAP).lookup(struct.pack("<I", 0))
    if raw is None:
        return None
    level, _pad, interval, wakeup = CONFIG.unpack(raw)
    if interval == 0:
        return None
    return DatapathConfig(level, interval, wakeup)


def set_endpoint(obj: BpfObject, ifindex: int, ep_id: int, identity: int = 0) -> None:
    """Map the host-side interface ``ifindex`` to endpoint ``ep_id`` (and its identity)."""
    obj.map(ENDPOINTS_MAP).update(
        ENDPOINT_KEY.pack(ifindex), ENDPOINT_INFO.pack(ep_id, identity, 0, 0)
    )


def delete_endpoint(obj: BpfObject, ifindex: int) -> bool:
    return obj.map(ENDPOINTS_MAP).delete(ENDPOINT_KEY.pack(ifindex))


@dataclass(frozen=True, slots=True)
class CounterReading:
    """A per-CPU counter: the sum and each CPU's share."""

    total: int
    per_cpu: tuple[int, ...]


def _read_percpu_u64(m: BpfMap, index: int) -> CounterReading:
    values = m.lookup_percpu(struct.pack("<I", index)) or []
    per_cpu = tuple(struct.unpack("<Q", v)[0] for v in values)
    return CounterReading(sum(per_cpu), per_cpu)


def read_lost(obj: BpfObject) -> CounterReading:
    """Ring-buffer reserve failures (records the datapath could not emit)."""
    return _read_percpu_u64(obj.map(LOST_MAP), 0)


def read_parse_errors(obj: BpfObject) -> dict[str, int]:
    """Packets the parser refused, summed over CPUs, by reason (reasons with 0 included)."""
    m = obj.map(PARSE_ERRORS_MAP)
    return {name: _read_percpu_u64(m, i).total for i, name in enumerate(PARSE_ERRORS) if i}


# --- BPF_PROG_TEST_RUN ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgRunResult:
    retval: int
    duration_ns: int
    data_out: bytes


def prog_test_run(
    prog_fd: int, data: bytes, repeat: int = 1, data_out_size: int | None = None
) -> ProgRunResult:
    """Run a program once (or ``repeat`` times) on ``data`` with BPF_PROG_TEST_RUN."""
    lib = libbpf()
    out_size = len(data) + 256 if data_out_size is None else data_out_size
    inbuf = ctypes.create_string_buffer(data, len(data))
    outbuf = ctypes.create_string_buffer(out_size)
    opts = _libbpf.BpfTestRunOpts(
        sz=ctypes.sizeof(_libbpf.BpfTestRunOpts),
        data_in=ctypes.cast(inbuf, ctypes.c_void_p),
        data_size_in=len(data),
        data_out=ctypes.cast(outbuf, ctypes.c_void_p),
        data_size_out=out_size,
        repeat=repeat,
    )
    lib.prog_test_run(prog_fd, opts, f"test-run program fd {prog_fd}")
    return ProgRunResult(
        int(opts.retval), int(opts.duration), outbuf.raw[: int(opts.data_size_out)]
    )


__all__ = [
    "AGG_MEDIUM",
    "AGG_NONE",
    "BpfMap",
    "BpfObject",
    "CounterReading",
    "DatapathConfig",
    "ProgRunResult",
    "attach_tc",
    "delete_endpoint",
    "detach_tc",
    "prog_test_run",
    "query_tc",
    "read_config",
    "read_lost",
    "read_parse_errors",
    "remove_clsact",
    "set_endpoint",
    "write_config",
]
