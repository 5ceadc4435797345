"""The compact printer's native path: ``native/hbcompact.c`` through ctypes.

The C code scans a chunk of GetFlowsResponse JSON lines and writes the compact line of every
line whose *template* it has learnt from Python, rendering only the time and the two ports
itself (see the comment at the top of hbcompact.c). It stops at the first line it cannot
render exactly (a new template or second, a non-flow response, any JSON shape it does not
know); the printer prints that line with ``compact_fast`` and teaches the C side what that
line's template and time head are, then resumes after it. So the printed bytes are always
those of the Python path, in order; ``CompactPrinter`` uses this path when the library
loads and the Python path otherwise.

Teaching is safe because a template is keyed on the raw JSON bytes of every value the line
depends on, and Python hands over only templates ``compact_fast`` itself keeps for its key
(``JsonTemplate``'s last item), computed from the decoded values of those same bytes; with
--print-policy-names the C key also holds the four policy lists, so the templates of drops
and policy verdicts (whose VERDICT column names the policies) are taught too.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Mapping
from ctypes import POINTER, c_char, c_char_p, c_int, c_int32, c_int64, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Any, Final

from hubblectl.printer.compact_fast import (
    KEY_AND_POLICIES,
    KEY_ONLY,
    Template,
    time_base,
    time_digits,
)
from hubblectl.printer.options import PrinterOptions

VERSION: Final = 3
# hb_compact_new's flags
FLAG_NODE_NAME: Final = 1  # the node name is part of every key (--print-node-name)
FLAG_POLICIES: Final = 2  # drops' and policy verdicts' keys hold the policy lists
# hb_compact_render's status
DONE: Final = 0
DECLINED: Final = 1
FULL: Final = 2
# decline reasons (bits)
MISS_TIME: Final = 1
MISS_TEMPLATE: Final = 2
OTHER: Final = 4

MAX_BASE: Final = 64  # bytes of a learnt time head's text (hbcompact.c MAX_BASE)
MAX_KEY: Final = 4096
INITIAL_OUT: Final = 1 << 18


@dataclass(frozen=True, slots=True)
class Functions:
    """The typed entry points of hbcompact.c."""

    new: Any
    free: Any
    render: Any
    key: Any
    learn_line: Any
    learn_time: Any


def bind(lib: object) -> Functions | None:
    """The entry points of a loaded library (a ``ctypes.CDLL`` or ``observer.native._lib``'s
    ``Library``), or None if it lacks them or their version differs."""
    from observer.native._lib import open_cdll

    cdll = open_cdll(lib)
    if cdll is None:
        return None
    try:
        version = cdll.hb_compact_version
        new, free = cdll.hb_compact_new, cdll.hb_compact_free
        render, key = cdll.hb_compact_render, cdll.hb_compact_key
        learn_line, learn_time = cdll.hb_compact_learn_line, cdll.hb_compact_learn_time
    except AttributeError:
        return None
    version.restype, version.argtypes = c_uint32, ()
    if version() != VERSION:
        return None
    new.restype, new.argtypes = c_void_p, (c_int32, c_uint32, c_uint32)
    free.restype, free.argtypes = None, (c_void_p,)
    render.restype = c_int
    render.argtypes = (c_void_p, c_char_p, c_uint64, c_uint64, c_void_p, c_uint64, c_void_p)
    key.restype = c_int64
    key.argtypes = (c_void_p, c_char_p, c_uint64, c_void_p, c_uint64, POINTER(c_uint32))
    learn_line.restype = c_int
    learn_line.argtypes = (
        c_void_p,
        c_char_p,
        c_uint64,
        c_char_p,
        c_uint64,
        c_char_p,
        c_uint64,
        c_char_p,
        c_uint64,
        c_uint32,
        c_uint32,
        c_uint32,
    )
    learn_time.restype, learn_time.argtypes = c_int, (c_void_p, c_char_p, c_char_p, c_uint64)
    return Functions(new, free, render, key, learn_line, learn_time)


def load_functions() -> Functions | None:
    """The entry points from ``observer.native``'s library, or None when it does not load."""
    try:
        from observer.native import _lib
    except ImportError:
        return None
    lib = _lib.load()
    return None if lib is None else bind(lib)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One ``hb_compact_render`` call: the text of ``lines`` rendered lines, where the scan
    stopped, and the line it declined (``decline_end`` > ``stop``; 0 if none) and why."""

    text: str
    lines: int
    stop: int
    decline_end: int
    reasons: int
    status: int


class NativeCompact:
    """One C context (learnt templates and time heads) for one printer's options."""

    def __init__(self, fns: Functions, opts: PrinterOptions, cache_limit: int) -> None:
        self._fns = fns
        self._layout = opts.time_format
        self._digits = time_digits(opts.time_format)
        flags = (FLAG_NODE_NAME if opts.print_node_name else 0) | (
            FLAG_POLICIES if opts.print_policy_names else 0
        )
        self._learnable = (KEY_ONLY, KEY_AND_POLICIES) if opts.print_policy_names else (KEY_ONLY,)
        ctx = fns.new(self._digits, flags, cache_limit)
        if not ctx:
            raise MemoryError("hb_compact_new failed")
        self._ctx: int = ctx
        self._finalizer = weakref.finalize(self, fns.free, ctx)
        self._res = (c_uint64 * 5)()
        self._key = (c_char * MAX_KEY)()
        self._summary_mode = c_uint32()
        self._out = bytearray(INITIAL_OUT)
        self._out_c = (c_char * len(self._out)).from_buffer(self._out)

    def close(self) -> None:
        self._finalizer()

    def render(self, data: bytes, pos: int) -> Rendered:
        """Render ``data[pos:]`` up to the end, a declined line, or a full buffer."""
        res = self._res
        status = self._fns.render(self._ctx, data, len(data), pos, self._out_c, len(self._out), res)
        stop, decline_end, size, lines, reasons = res
        text = str(memoryview(self._out)[:size], "utf-8") if size else ""
        if status == FULL and size == 0:  # one line does not fit: a bigger buffer
            self._out = bytearray(2 * len(self._out))
            self._out_c = (c_char * len(self._out)).from_buffer(self._out)
        return Rendered(text, lines, stop, decline_end, reasons, status)

    def can_learn(self, depends: int) -> bool:
        """Whether a template that depends on the key and ``depends`` (``JsonTemplate``'s
        last item) may be taught: the C key holds the policy lists with --print-policy-names."""
        return depends in self._learnable

    def learn_line(self, line: bytes, flow: Mapping[str, Any], template: Template) -> bool:
        """Teach the template of ``line`` (decoded: ``flow``), one that depends only on what
        its C key holds. In summary mode (the key leaves out a plain printable ``Summary``,
        which the C code then prints as it stands) the template is taught without the
        Summary's text and the ``)`` and newline after it."""
        mode = self._summary_mode
        n = self._fns.key(self._ctx, line, len(line), self._key, MAX_KEY, ctypes.byref(mode))
        if n < 0:
            return False
        pieces = list(template[:3])
        if self._summary_mode.value:
            summary = flow.get("Summary")
            if type(summary) is not str:
                return False
            tail = summary + ")\n"
            # the last piece with text holds the end of the line (the ports come before it)
            last = 2 if pieces[2] else 1 if pieces[1] else 0
            if not pieces[last].endswith(tail):
                return False
            pieces[last] = pieces[last][: len(pieces[last]) - len(tail)]
        try:
            ab, bb, cb = (piece.encode() for piece in pieces)
        except UnicodeEncodeError:
            return False
        key = self._key.raw[:n]
        done = self._fns.learn_line(
            self._ctx,
            key,
            n,
            ab,
            len(ab),
            bb,
            len(bb),
            cb,
            len(cb),
            template[3],
            template[4],
            self._summary_mode.value,
        )
        return bool(done >= 0)

    def learn_time(self, flow: Mapping[str, Any]) -> bool:
        """Teach the text of the flow's time head (the C side checked its shape)."""
        value = flow.get("time")
        if type(value) is not str or len(value) < 19 or not value[:19].isascii():
            return False
        head = value[:19]
        base = time_base(head, self._layout, self._digits).encode()
        if len(base) > MAX_BASE:
            return False
        return bool(self._fns.learn_time(self._ctx, head.encode(), base, len(base)) >= 0)
