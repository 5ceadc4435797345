"""Fixtures for the BPF datapath tests: a private pin root and a loaded datapath."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from observer.bpf import loader
from observer.bpf.loader import BpfObject, DatapathConfig
from observer.bpf.ringbuf import RingBuffer

from . import packets

TC_ACT_OK = 0


def new_pin_root() -> Path:
    return Path(f"/sys/fs/bpf/hubblectl-test-{secrets.token_hex(4)}")


@pytest.fixture
def pin_root(privileged_env: None) -> Iterator[Path]:
    """A pin root under /sys/fs/bpf that is removed, with every pin in it, afterwards."""
    root = new_pin_root()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        assert not root.exists(), f"could not remove {root}"


class Datapath:
    """datapath.o loaded, its ring buffer mapped, and BPF_PROG_TEST_RUN at hand."""

    def __init__(self, obj: BpfObject) -> None:
        self.obj = obj
        ring = obj.map(loader.RING_MAP)
        self.rb = RingBuffer(ring.fd, ring.max_entries)
        self.fds = {
            name: obj.prog_fd(name) for name in (loader.PROG_FROM_ENDPOINT, loader.PROG_TO_ENDPOINT)
        }

    def run(self, frame: bytes, prog: str = loader.PROG_FROM_ENDPOINT) -> list[dict[str, Any]]:
        """Run ``prog`` on the frame; the records it emitted, decoded."""
        res = loader.prog_test_run(self.fds[prog], frame)
        assert res.retval == TC_ACT_OK
        return [packets.decode(r) for r in self.rb.drain()]

    def one(self, frame: bytes, prog: str = loader.PROG_FROM_ENDPOINT) -> dict[str, Any] | None:
        recs = self.run(frame, prog)
        assert len(recs) <= 1, recs
        return recs[0] if recs else None

    def configure(self, **kw: Any) -> None:
        loader.write_config(self.obj, DatapathConfig(**kw))

    def close(self) -> None:
        self.rb.close()
        self.obj.close()


def open_datapath(
    bpf_build_dir: Path, pin_root: Path | None, ring_bytes: int = 1 << 20
) -> Datapath:
    return Datapath(BpfObject.open(bpf_build_dir / "datapath.o", pin_root, ring_bytes=ring_bytes))


@pytest.fixture
def datapath(bpf_build_dir: Path, pin_root: Path) -> Iterator[Datapath]:
    dp = open_datapath(bpf_build_dir, pin_root)
    try:
        yield dp
    finally:
        dp.close()
