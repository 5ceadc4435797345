"""A BPF ring-buffer consumer that reads records in batches straight from the mapping.

Layout (kernel/bpf/ringbuf.c): page 0 of the map holds ``consumer_pos`` (mapped
read-write), page 1 ``producer_pos``, and after it the data area, which the kernel maps
twice in a row so a record that wraps is still contiguous (mapped read-only). Each record
is an 8-byte header (u32 length with BUSY bit 1<<31 and DISCARD bit 1<<30, u32 page
offset) and its data, the whole rounded up to 8 bytes.

``drain()`` copies up to ``max_records`` committed records out as bytes and then
advances ``consumer_pos`` once; it stops at the first record still being written
(BUSY). One Python loop over the batch instead of a libbpf callback per record.

Wake-ups: the datapath submits without waking anyone until the unread data passes a
mark, so a consumer should both watch ``fileno()`` (an epoll fd, readable when the
kernel wakes consumers; for ``loop.add_reader``) and drain on a short timer.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import select
import struct
from types import TracebackType
from typing import Final

from observer.errors import BpfError

BUSY_BIT: Final = 1 << 31
DISCARD_BIT: Final = 1 << 30
HDR_SIZE: Final = 8
_LEN_MASK: Final = ~(BUSY_BIT | DISCARD_BIT) & 0xFFFFFFFF

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class RingBuffer:
    """Consumer of one BPF_MAP_TYPE_RINGBUF map of ``size`` bytes (its max_entries).

    Single consumer: do not drain one ring from two readers. ``close()`` is idempotent;
    the map fd stays the caller's (``map_fd``: the native ingest path maps it too).
    """

    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        if size < page or size & (size - 1):
            raise BpfError(
                errno.EINVAL,
                f"map ring buffer of {size} bytes (not a power-of-two number of pages)",
            )
        self.size = size
        self.map_fd = map_fd
        self._mask = size - 1
        self._data_off = page  # the data area starts one page into the producer mapping
        self._cons: mmap.mmap | None = None
        self._prod: mmap.mmap | None = None
        self._epoll: select.epoll | None = None
        try:
            self._cons = mmap.mmap(
                map_fd, page, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=0
            )
            self._prod = mmap.mmap(
                map_fd, page + 2 * size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=page
            )
            self._epoll = select.epoll()
            self._epoll.register(map_fd, select.EPOLLIN)
        except OSError as e:
            self.close()
            raise BpfError(e.errno or errno.EIO, f"map ring buffer fd {map_fd}") from e

    # --- positions -----------------------------------------------------------------

    def _maps(self) -> tuple[mmap.mmap, mmap.mmap]:
        if self._cons is None or self._prod is None:
            raise BpfError(errno.EBADF, "use closed ring buffer")
        return self._cons, self._prod

    @property
    def consumer_pos(self) -> int:
        return int(_U64.unpack_from(self._maps()[0], 0)[0])

    @property
    def producer_pos(self) -> int:
        return int(_U64.unpack_from(self._maps()[1], 0)[0])

    def available(self) -> int:
        """Bytes written by the producer and not consumed yet (headers included)."""
        cons, prod = self._maps()
        return int(_U64.unpack_from(prod, 0)[0] - _U64.unpack_from(cons, 0)[0])

    # --- reading -------------------------------------------------------------------

    def drain(self, max_records: int = 4096) -> list[bytes]:
        """Copy out up to ``max_records`` committed records and release their space."""
        cons_map, prod_map = self._maps()
        cons = _U64.unpack_from(cons_map, 0)[0]
        prod = _U64.unpack_from(prod_map, 0)[0]
        start = cons
        out: list[bytes] = []
        append = out.append
        unpack_u32 = _U32.unpack_from
        mask = self._mask
        base = self._data_off
        while cons < prod and len(out) < max_records:
            off = base + (cons & mask)
            hdr = unpack_u32(prod_map, off)[0]
            if hdr & BUSY_BIT:
                break
            n = hdr & _LEN_MASK
            if not hdr & DISCARD_BIT:
                append(prod_map[off + HDR_SIZE : off + HDR_SIZE + n])
            cons += (n + HDR_SIZE + 7) & ~7
        if cons != start:
            _U64.pack_into(cons_map, 0, cons)
        return out

    def fileno(self) -> int:
        """An epoll fd that is readable when the kernel wakes the ring's consumers."""
        if self._epoll is None:
            raise BpfError(errno.EBADF, "use closed ring buffer")
        return self._epoll.fileno()

    def poll(self, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` (negative: forever) for a wake-up; True if data is ready.

        Returns at once when unread data is already there. Records submitted without a
        wake-up do not end the wait early: they are found by the next poll or drain.
        """
        if self.available() > 0:
            return True
        if self._epoll is None:
            raise BpfError(errno.EBADF, "use closed ring buffer")
        self._epoll.poll(timeout_ms / 1000 if timeout_ms >= 0 else -1)  # EINTR is retried
        return self.available() > 0

    # --- lifetime ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._prod is None

    def close(self) -> None:
        for m in (self._cons, self._prod):
            if m is not None:
                with contextlib.suppress(BufferError, ValueError):
                    m.close()
        self._cons = self._prod = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
