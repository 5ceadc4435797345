"""ctypes bindings for libbpf 1.1: the only module that loads libbpf.so.1.

Every symbol used gets argtypes/restype. Failures become ``BpfError(errno, what)``:
libbpf 1.x returns ``-errno`` from int functions and NULL (with errno set) from pointer
functions. libbpf's own messages go to the ``observer.bpf.libbpf`` logger (the print
callback is kept referenced by the ``Libbpf`` instance for the life of the process).

The struct mirrors follow /usr/include/bpf/{libbpf,bpf}.h of libbpf 1.1; a privileged
test compiles those headers and compares sizes and offsets.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
from collections.abc import Iterator
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)

from observer.errors import BpfError

log = logging.getLogger("observer.bpf.libbpf")

LIBBPF_SONAME = "libbpf.so.1"

# enum libbpf_print_level
LIBBPF_WARN = 0
LIBBPF_INFO = 1
LIBBPF_DEBUG = 2

# enum bpf_tc_attach_point
BPF_TC_INGRESS = 1 << 0
BPF_TC_EGRESS = 1 << 1
BPF_TC_CUSTOM = 1 << 2

# enum bpf_tc_flags
BPF_TC_F_REPLACE = 1 << 0

# bpf_map_update_elem flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

# enum bpf_map_type (the ones we look at)
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_RINGBUF = 27
PERCPU_MAP_TYPES = frozenset(
    {BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH}
)

_LEVELS = {LIBBPF_WARN: logging.WARNING, LIBBPF_INFO: logging.INFO, LIBBPF_DEBUG: logging.DEBUG}


class BpfObjectOpenOpts(Structure):
    """struct bpf_object_open_opts (80 bytes in libbpf 1.1)."""

    _fields_ = [
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", c_bool),
        ("pin_root_path", c_char_p),
        ("_attach_prog_fd", c_uint32),  # `__u32 :32` stub of the removed field
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_void_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint32),
    ]


class BpfTcHook(Structure):
    """struct bpf_tc_hook (24 bytes)."""

    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),  # enum bpf_tc_attach_point
        ("parent", c_uint32),
    ]


class BpfTcOpts(Structure):
    """struct bpf_tc_opts (32 bytes)."""

    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
    ]


class BpfTestRunOpts(Structure):
    """struct bpf_test_run_opts (80 bytes)."""

    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class BpfMapInfo(Structure):
    """The leading fields of struct bpf_map_info (the kernel fills what fits)."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", ctypes.c_char * 16),
    ]


# int (*libbpf_print_fn_t)(enum libbpf_print_level, const char *fmt, va_list ap)
# On x86-64 (and arm64) a va_list parameter is passed as a pointer.
PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)


class Libbpf:
    """The loaded library with typed, error-checked entry points.

    Methods taking a ``what`` argument raise ``BpfError(errno, what)`` on failure.
    Pointers (objects, programs, maps) are plain ints.
    """

    def __init__(self, soname: str = LIBBPF_SONAME) -> None:
        try:
            self._lib = ctypes.CDLL(soname, use_errno=True)
            self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError as e:
            raise BpfError(errno.ENOENT, f"load {soname}") from e
        self._declare()
        self._quiet = 0
        # Keep the callback referenced: libbpf holds only the raw pointer.
        self._print_cb = PRINT_FN(self._on_print)
        self._lib.libbpf_set_print(self._print_cb)

    def _declare(self) -> None:
        lib = self._lib
        sig: dict[str, tuple[list[type], type | None]] = {
            "bpf_object__open_file": ([c_char_p, POINTER(BpfObjectOpenOpts)], c_void_p),
            "bpf_object__load": ([c_void_p], c_int),
            "bpf_object__close": ([c_void_p], None),
            "bpf_object__find_program_by_name": ([c_void_p, c_char_p], c_void_p),
            "bpf_object__find_map_by_name": ([c_void_p, c_char_p], c_void_p),
            "bpf_object__next_map": ([c_void_p, c_void_p], c_void_p),
            "bpf_program__fd": ([c_void_p], c_int),
            "bpf_map__fd": ([c_void_p], c_int),
            "bpf_map__name": ([c_void_p], c_char_p),
            "bpf_map__type": ([c_void_p], c_int),
            "bpf_map__key_size": ([c_void_p], c_uint32),
            "bpf_map__value_size": ([c_void_p], c_uint32),
            "bpf_map__max_entries": ([c_void_p], c_uint32),
            "bpf_map__map_flags": ([c_void_p], c_uint32),
            "bpf_map__set_max_entries": ([c_void_p, c_uint32], c_int),
            "bpf_map__set_pin_path": ([c_void_p, c_char_p], c_int),
            "bpf_map__pin_path": ([c_void_p], c_char_p),
            "bpf_map__pin": ([c_void_p, c_char_p], c_int),
            "bpf_map__unpin": ([c_void_p, c_char_p], c_int),
            "bpf_tc_hook_create": ([POINTER(BpfTcHook)], c_int),
            "bpf_tc_hook_destroy": ([POINTER(BpfTcHook)], c_int),
            "bpf_tc_attach": ([POINTER(BpfTcHook), POINTER(BpfTcOpts)], c_int),
            "bpf_tc_detach": ([POINTER(BpfTcHook), POINTER(BpfTcOpts)], c_int),
            "bpf_tc_query": ([POINTER(BpfTcHook), POINTER(BpfTcOpts)], c_int),
            "bpf_map_update_elem": ([c_int, c_void_p, c_void_p, c_uint64], c_int),
            "bpf_map_lookup_elem": ([c_int, c_void_p, c_void_p], c_int),
            "bpf_map_delete_elem": ([c_int, c_void_p], c_int),
            "bpf_map_get_next_key": ([c_int, c_void_p, c_void_p], c_int),
            "bpf_obj_pin": ([c_int, c_char_p], c_int),
            "bpf_obj_get": ([c_char_p], c_int),
            "bpf_obj_get_info_by_fd": ([c_int, c_void_p, POINTER(c_uint32)], c_int),
            "bpf_prog_test_run_opts": ([c_int, POINTER(BpfTestRunOpts)], c_int),
            "libbpf_set_print": ([PRINT_FN], PRINT_FN),
            "libbpf_num_possible_cpus": ([], c_int),
        }
        for name, (argtypes, restype) in sig.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = restype
        vsnprintf = self._libc.vsnprintf
        vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
        vsnprintf.restype = c_int

    def _on_print(self, level: int, fmt: bytes | None, args: int | None) -> int:
        try:
            pylevel = logging.DEBUG if self._quiet else _LEVELS.get(level, logging.DEBUG)
            if fmt is None or not log.isEnabledFor(pylevel):
                return 0
            buf = ctypes.create_string_buffer(2048)
            self._libc.vsnprintf(buf, len(buf), fmt, args)
            msg = buf.value.decode("utf-8", "replace").rstrip("\n")
            if msg:
                log.log(pylevel, "%s", msg)
        except Exception:  # never let an exception cross into C
            return 0
        return 0

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Log libbpf's messages at DEBUG meanwhile (for calls whose failure is expected,
        such as creating a clsact qdisc that exists)."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    # --- helpers -------------------------------------------------------------------

    @staticmethod
    def _check(ret: int, what: str) -> int:
        if ret < 0:
            raise BpfError(-ret, what)
        return ret

    @staticmethod
    def _check_ptr(ptr: int | None, what: str) -> int:
        if not ptr:
            raise BpfError(ctypes.get_errno() or errno.EINVAL, what)
        return ptr

    # --- objects, programs, maps ---------------------------------------------------

    def object_open_file(self, path: str, pin_root_path: str | None) -> int:
        opts = BpfObjectOpenOpts(sz=ctypes.sizeof(BpfObjectOpenOpts))
        if pin_root_path is not None:
            opts.pin_root_path = pin_root_path.encode()
        ctypes.set_errno(0)
        ptr = self._lib.bpf_object__open_file(path.encode(), ctypes.byref(opts))
        return self._check_ptr(ptr, f"open BPF object {path}")

    def object_load(self, obj: int, what: str) -> None:
        self._check(self._lib.bpf_object__load(c_void_p(obj)), what)

    def object_close(self, obj: int) -> None:
        self._lib.bpf_object__close(c_void_p(obj))

    def find_program(self, obj: int, name: str) -> int:
        ctypes.set_errno(0)
        ptr = self._lib.bpf_object__find_program_by_name(c_void_p(obj), name.encode())
        return self._check_ptr(ptr, f"find program {name}")

    def find_map(self, obj: int, name: str) -> int:
        ctypes.set_errno(0)
        ptr = self._lib.bpf_object__find_map_by_name(c_void_p(obj), name.encode())
        return self._check_ptr(ptr, f"find map {name}")

    def maps(self, obj: int) -> list[int]:
        out: list[int] = []
        cur: int | None = self._lib.bpf_object__next_map(c_void_p(obj), None)
        while cur:
            out.append(cur)
            cur = self._lib.bpf_object__next_map(c_void_p(obj), c_void_p(cur))
        return out

    def program_fd(self, prog: int, what: str) -> int:
        return self._check(self._lib.bpf_program__fd(c_void_p(prog)), what)

    def map_fd(self, m: int, what: str) -> int:
        return self._check(self._lib.bpf_map__fd(c_void_p(m)), what)

    def map_name(self, m: int) -> str:
        raw: bytes | None = self._lib.bpf_map__name(c_void_p(m))
        return raw.decode() if raw else ""

    def map_type(self, m: int) -> int:
        return int(self._lib.bpf_map__type(c_void_p(m)))

    def map_key_size(self, m: int) -> int:
        return int(self._lib.bpf_map__key_size(c_void_p(m)))

    def map_value_size(self, m: int) -> int:
        return int(self._lib.bpf_map__value_size(c_void_p(m)))

    def map_max_entries(self, m: int) -> int:
        return int(self._lib.bpf_map__max_entries(c_void_p(m)))

    def map_flags(self, m: int) -> int:
        return int(self._lib.bpf_map__map_flags(c_void_p(m)))

    def map_set_max_entries(self, m: int, n: int, what: str) -> None:
        self._check(self._lib.bpf_map__set_max_entries(c_void_p(m), n), what)

    def map_set_pin_path(self, m: int, path: str | None, what: str) -> None:
        self._check(
            self._lib.bpf_map__set_pin_path(c_void_p(m), path.encode() if path else None), what
        )

    def map_pin_path(self, m: int) -> str | None:
        raw: bytes | None = self._lib.bpf_map__pin_path(c_void_p(m))
        return raw.decode() if raw else None

    def map_pin(self, m: int, path: str | None, what: str) -> None:
        self._check(self._lib.bpf_map__pin(c_void_p(m), path.encode() if path else None), what)

    def map_unpin(self, m: int, path: str | None, what: str) -> None:
        self._check(self._lib.bpf_map__unpin(c_void_p(m), path.encode() if path else None), what)

    # --- map elements (by fd) ------------------------------------------------------

    def map_update_elem(self, fd: int, key: bytes, value: bytes, flags: int, what: str) -> None:
        self._check(self._lib.bpf_map_update_elem(fd, key, value, flags), what)

    def map_lookup_elem(self, fd: int, key: bytes, value_size: int, what: str) -> bytes | None:
        """The value, or None when the key is absent (ENOENT)."""
        buf = ctypes.create_string_buffer(value_size)
        ret = self._lib.bpf_map_lookup_elem(fd, key, buf)
        if ret == -errno.ENOENT:
            return None
        self._check(ret, what)
        return buf.raw

    def map_delete_elem(self, fd: int, key: bytes, what: str) -> bool:
        """True if deleted, False if the key was absent."""
        ret = self._lib.bpf_map_delete_elem(fd, key)
        if ret == -errno.ENOENT:
            return False
        self._check(ret, what)
        return True

    def map_get_next_key(
        self, fd: int, key: bytes | None, key_size: int, what: str
    ) -> bytes | None:
        """The key after ``key`` (the first key for None), or None at the end."""
        buf = ctypes.create_string_buffer(key_size)
        ret = self._lib.bpf_map_get_next_key(fd, key, buf)
        if ret == -errno.ENOENT:
            return None
        self._check(ret, what)
        return buf.raw

    # --- pins and info -------------------------------------------------------------

    def obj_pin(self, fd: int, path: str) -> None:
        self._check(self._lib.bpf_obj_pin(fd, path.encode()), f"pin {path}")

    def obj_get(self, path: str) -> int:
        return self._check(self._lib.bpf_obj_get(path.encode()), f"open pinned {path}")

    def map_info(self, fd: int, what: str) -> BpfMapInfo:
        info = BpfMapInfo()
        size = c_uint32(ctypes.sizeof(info))
        self._check(
            self._lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), what
        )
        return info

    # --- tc ------------------------------------------------------------------------

    @staticmethod
    def tc_hook(ifindex: int, attach_point: int) -> BpfTcHook:
        return BpfTcHook(sz=ctypes.sizeof(BpfTcHook), ifindex=ifindex, attach_point=attach_point)

    @staticmethod
    def tc_opts(handle: int, priority: int, prog_fd: int = 0, flags: int = 0) -> BpfTcOpts:
        return BpfTcOpts(
            sz=ctypes.sizeof(BpfTcOpts),
            handle=handle,
            priority=priority,
            prog_fd=prog_fd,
            flags=flags,
        )

    def tc_hook_create(self, hook: BpfTcHook, what: str) -> bool:
        """Create the clsact qdisc; False if it already existed."""
        with self.quiet():
            ret = self._lib.bpf_tc_hook_create(ctypes.byref(hook))
        if ret == -errno.EEXIST:
            return False
        self._check(ret, what)
        return True

    def tc_hook_destroy(self, hook: BpfTcHook, what: str) -> None:
        self._check(self._lib.bpf_tc_hook_destroy(ctypes.byref(hook)), what)

    def tc_attach(self, hook: BpfTcHook, opts: BpfTcOpts, what: str) -> int:
        """Attach; returns the attached program's id."""
        self._check(self._lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)), what)
        return int(opts.prog_id)

    def tc_detach(self, hook: BpfTcHook, opts: BpfTcOpts, what: str) -> bool:
        """Detach; False if no such filter was attached."""
        ret = self._lib.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
        if ret == -errno.ENOENT:
            return False
        self._check(ret, what)
        return True

    def tc_query(self, hook: BpfTcHook, opts: BpfTcOpts, what: str) -> int | None:
        """The program id attached at (handle, priority), or None.

        Raises EINVAL when the interface has no clsact qdisc or no filter chain left."""
        with self.quiet():
            ret = self._lib.bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts))
        if ret == -errno.ENOENT:
            return None
        self._check(ret, what)
        return int(opts.prog_id)

    # --- test runs and misc --------------------------------------------------------

    def prog_test_run(self, prog_fd: int, opts: BpfTestRunOpts, what: str) -> None:
        self._check(self._lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), what)

    def num_possible_cpus(self) -> int:
        return self._check(self._lib.libbpf_num_possible_cpus(), "count possible CPUs")


@functools.cache
def libbpf() -> Libbpf:
    """The process-wide libbpf binding (loaded once: libbpf's print hook is global)."""
    return Libbpf()


__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_NOEXIST",
    "BPF_TC_EGRESS",
    "BPF_TC_F_REPLACE",
    "BPF_TC_INGRESS",
    "PERCPU_MAP_TYPES",
    "BpfMapInfo",
    "BpfObjectOpenOpts",
    "BpfTcHook",
    "BpfTcOpts",
    "BpfTestRunOpts",
    "Libbpf",
    "libbpf",
]
