"""A BPF ring buffer stand-in for unit tests: a memfd laid out like the kernel's mapping.

File layout = what mmap of a BPF_MAP_TYPE_RINGBUF map shows: page 0 the consumer position,
page 1 the producer position, then the data area twice in a row (the kernel maps it twice;
here the writer keeps the second copy in step). Both ``RingBuffer`` (Python) and
``NativeRing`` (C) map it with the same offsets they use for a real map.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
from types import TracebackType
from unittest import mock

from observer.bpf.ringbuf import BUSY_BIT, DISCARD_BIT, HDR_SIZE, RingBuffer

PAGE = mmap.PAGESIZE
_U64 = struct.Struct("<Q")


class _NoEpoll:
    """select.epoll stand-in: epoll refuses regular files, and these tests never wait."""

    def register(self, fd: int, mask: int) -> None:
        pass

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return []

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


class FileRing:
    """Writer side of a ring of ``size`` bytes (a power of two, >= one page)."""

    def __init__(self, size: int = 1 << 16) -> None:
        assert size >= PAGE and size & (size - 1) == 0
        self.size = size
        self.fd = os.memfd_create("hb-test-ring")
        os.ftruncate(self.fd, 2 * PAGE + 2 * size)
        self._map = mmap.mmap(self.fd, 2 * PAGE + 2 * size)
        self._data = 2 * PAGE

    @property
    def consumer_pos(self) -> int:
        return int(_U64.unpack_from(self._map, 0)[0])

    @property
    def producer_pos(self) -> int:
        return int(_U64.unpack_from(self._map, PAGE)[0])

    def set_positions(self, pos: int) -> None:
        """Start both positions at ``pos`` (to put records across the wrap)."""
        _U64.pack_into(self._map, 0, pos)
        _U64.pack_into(self._map, PAGE, pos)

    def _write(self, pos: int, data: bytes) -> None:
        """Write ``data`` at ring position ``pos`` into both copies of the data area."""
        size, base, m = self.size, self._data, self._map
        off = pos & (size - 1)
        first = min(len(data), size - off)
        for copy in (base, base + size):
            m[copy + off : copy + off + first] = data[:first]
            m[copy : copy + len(data) - first] = data[first:]

    def push(self, record: bytes, *, busy: bool = False, discard: bool = False) -> int:
        """Append one record (header + data, padded to 8) and publish it; returns its position."""
        pos = self.producer_pos
        total = (len(record) + HDR_SIZE + 7) & ~7
        assert pos + total - self.consumer_pos <= self.size, "ring full"
        hdr = len(record) | (BUSY_BIT if busy else 0) | (DISCARD_BIT if discard else 0)
        self._write(
            pos, struct.pack("<II", hdr, 0) + record + bytes(total - HDR_SIZE - len(record))
        )
        _U64.pack_into(self._map, PAGE, pos + total)
        return pos

    def commit(self, pos: int) -> None:
        """Clear the BUSY bit of the record at ``pos``."""
        off = self._data + (pos & (self.size - 1))
        hdr = struct.unpack_from("<I", self._map, off)[0] & ~BUSY_BIT
        self._write(pos, struct.pack("<I", hdr))

    def room(self) -> int:
        return self.size - (self.producer_pos - self.consumer_pos)

    def reader(self) -> RingBuffer:
        with mock.patch.object(select, "epoll", _NoEpoll):
            return RingBuffer(self.fd, self.size)

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)

    def __enter__(self) -> FileRing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
