"""ctypes bindings for native/build/libhbflow.so (native/hbflow.c): the only module that loads it.

Every symbol used gets argtypes/restype. ``load()`` finds the library (``$HUBBLECTL_NATIVE_LIB``
or ``native/build/libhbflow.so`` next to this package in a source checkout), checks its ABI
version and returns ``None`` when it cannot be used; ``load_problem()`` says why.
"""

from __future__ import annotations

import ctypes
import functools
import os
from ctypes import POINTER, Structure, c_char_p, c_int, c_int64, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import Final

from observer.errors import ObserverError

ABI_VERSION: Final = 2
LIB_ENV: Final = "HUBBLECTL_NATIVE_LIB"
DEFAULT_PATH: Final = Path(__file__).resolve().parents[2] / "native" / "build" / "libhbflow.so"

# enum hb_status
STATUS_EMPTY: Final = 0
STATUS_LIMIT: Final = 1
STATUS_PYTHON: Final = 2

# indexed tables (enum in hbflow.c)
TAB_TCP_FLAGS: Final = 0
TAB_TCP_SUMMARY: Final = 1
TAB_OBS_POINT: Final = 2
TAB_TRACE_REASON: Final = 3
TAB_DROP_DESC: Final = 4
TAB_POLICY_DROP: Final = 5
TAB_ICMP_TYPE: Final = 6
TAB_ICMP_HAS_CODES: Final = 7
TAB_MISC: Final = 8
# entries of TAB_MISC
MISC_EMITTER: Final = 0
MISC_NODE_NAME: Final = 1
MISC_EP4_DEFAULT: Final = 2
MISC_EP6_DEFAULT: Final = 3
MISC_ICMP4_PREFIX: Final = 4
MISC_ICMP6_PREFIX: Final = 5
MISC_COUNT: Final = 6

# keyed tables
KEY_EP4: Final = 0
KEY_EP6: Final = 1
KEY_IFACE: Final = 2
KEY_POLICY: Final = 3
KEY_ICMP_CODE: Final = 4


class NativeError(ObserverError):
    """The native library is missing, unusable, or a call into it failed."""


class DrainArgs(Structure):
    """struct hb_drain: the in/out block of ``hb_drain``."""

    _fields_ = (
        ("offset_ns", c_int64),
        ("out", c_void_p),
        ("out_cap", c_uint64),
        ("times", c_void_p),
        ("fmt", c_void_p),
        ("fmt_cap", c_uint64),
        ("max_records", c_uint32),
        ("reserved", c_uint32),
        ("out_len", c_uint64),
        ("fmt_len", c_uint64),
        ("lines", c_uint32),
        ("records", c_uint32),
        ("errors", c_uint32),
        ("status", c_uint32),
    )


class Library:
    """The loaded library with typed entry points."""

    def __init__(self, path: Path) -> None:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise NativeError(f"cannot load {path}: {e}") from e
        self.path = path

        def fn(name: str, restype: object, *argtypes: object) -> ctypes._NamedFuncPointer:
            try:
                f = getattr(lib, name)
            except AttributeError as e:
                raise NativeError(
                    f"{path}: no symbol {name} (rebuild with `make -C native`)"
                ) from e
            f.restype = restype
            f.argtypes = argtypes
            return f  # type: ignore[no-any-return]

        self.abi_version = fn("hb_abi_version", c_uint32)
        self.drain_struct_size = fn("hb_drain_struct_size", c_uint32)
        self.ctx_new = fn("hb_ctx_new", c_void_p)
        self.ctx_free = fn("hb_ctx_free", None, c_void_p)
        self.ctx_seed = fn("hb_ctx_seed", None, c_void_p, c_uint64)
        self.set_table = fn("hb_set_table", c_int, c_void_p, c_uint32, c_uint32, c_void_p, c_char_p)
        self.set_keyed = fn(
            "hb_set_keyed", c_int, c_void_p, c_uint32, c_uint32, c_char_p, c_void_p, c_char_p
        )
        self.max_line = fn("hb_max_line", c_uint64, c_void_p)
        self.drain = fn("hb_drain", c_int, c_void_p, c_void_p, POINTER(DrainArgs))
        self.take_counts = fn("hb_take_counts", c_uint32, c_void_p, c_void_p, c_void_p, c_uint32)
        self.ring_open = fn("hb_ring_open", c_void_p, c_int, c_uint64, POINTER(c_int))
        self.ring_available = fn("hb_ring_available", c_uint64, c_void_p)
        self.ring_close = fn("hb_ring_close", None, c_void_p)

        version = self.abi_version()
        if version != ABI_VERSION:
            raise NativeError(
                f"{path}: ABI version {version}, this agent needs {ABI_VERSION} "
                "(rebuild with `make -C native`)"
            )
        if self.drain_struct_size() != ctypes.sizeof(DrainArgs):
            raise NativeError(f"{path}: struct hb_drain size differs from the binding's")


def open_cdll(lib: object) -> ctypes.CDLL | None:
    """A ``ctypes.CDLL`` for a loaded library: ``lib`` itself, or the file a ``Library``
    was loaded from, opened again for a part that binds its own symbols (None if it cannot
    be opened)."""
    if isinstance(lib, ctypes.CDLL):
        return lib
    path = getattr(lib, "path", None)
    if path is None:
        return None
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        return None


def library_path() -> Path:
    """Where ``load()`` looks: ``$HUBBLECTL_NATIVE_LIB`` if set, else the source-tree build."""
    env = os.environ.get(LIB_ENV)
    return Path(env) if env else DEFAULT_PATH


@functools.cache
def _load(path: Path) -> Library | NativeError:
    if not path.is_file():
        return NativeError(
            f"{path} not found: build it with `make -C native` (scripts/setup.sh does)"
        )
    try:
        return Library(path)
    except NativeError as e:
        return e


def load() -> Library | None:
    """The library, or None if it is missing or unusable (see ``load_problem``)."""
    lib = _load(library_path())
    return lib if isinstance(lib, Library) else None


def load_problem() -> str | None:
    """Why ``load()`` returns None, or None when it does not."""
    lib = _load(library_path())
    return None if isinstance(lib, Library) else str(lib)


def require() -> Library:
    """The library; raises ``NativeError`` with the reason if it cannot be used."""
    lib = _load(library_path())
    if isinstance(lib, NativeError):
        raise lib
    return lib
