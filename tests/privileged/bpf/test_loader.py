"""observer.bpf.loader and _libbpf: maps by bytes, errors, logging, lifetimes."""

from __future__ import annotations

import errno
import logging
import struct
from pathlib import Path

import pytest

from observer.bpf import loader
from observer.bpf.loader import BpfObject, DatapathConfig
from observer.errors import BpfError, ConfigError

from .conftest import Datapath


def test_bpf_error_reads_what_then_strerror() -> None:
    err = BpfError(errno.EPERM, "attach tc ingress on lxc1234")
    assert str(err) == "attach tc ingress on lxc1234: Operation not permitted"
    assert isinstance(err, OSError) and err.errno == errno.EPERM


def test_corrupt_object_fails_with_libbpf_message_in_logging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, privileged_env: None
) -> None:
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"\x7fELF" + b"\0" * 200)
    with caplog.at_level(logging.DEBUG, logger="observer.bpf.libbpf"), pytest.raises(BpfError) as err:
        BpfObject.open(bad, None)
    assert str(err.value).startswith(f"open BPF object {bad}: ")
    libbpf_lines = [r for r in caplog.records if r.name == "observer.bpf.libbpf"]
    assert libbpf_lines, "libbpf's own messages should reach logging"
    assert any(r.levelno == logging.WARNING and "libbpf: " in r.getMessage() for r in libbpf_lines)
    assert all(not r.getMessage().endswith("\n") for r in libbpf_lines)


def test_missing_object_is_a_bpf_error(tmp_path: Path, privileged_env: None) -> None:
    with pytest.raises(BpfError) as err:
        BpfObject.open(tmp_path / "nope.o", None)
    assert err.value.errno == errno.ENOENT


@pytest.mark.parametrize("ring_bytes", [1000, 4096 * 3, 0], ids=["not-pages", "not-power-of-two", "zero"])
def test_bad_ring_size_is_a_config_error(bpf_build_dir: Path, ring_bytes: int) -> None:
    with pytest.raises(ConfigError):
        BpfObject.open(bpf_build_dir / "datapath.o", None, ring_bytes=ring_bytes)


def test_hash_map_by_bytes(datapath: Datapath) -> None:
    m = datapath.obj.map(loader.ENDPOINTS_MAP)
    assert (m.key_size, m.value_size, m.percpu) == (4, 16, False)
    assert list(m.keys()) == []
    for ifindex in (3, 4, 5):
        loader.set_endpoint(datapath.obj, ifindex, ep_id=ifindex * 10, identity=ifindex + 1000)
    assert sorted(struct.unpack("<I", k)[0] for k in m) == [3, 4, 5]
    assert sorted(m.keys()) == sorted(m)
    items = {struct.unpack("<I", k)[0]: loader.ENDPOINT_INFO.unpack(v) for k, v in m.items()}
    assert items == {i: (i * 10, i + 1000, 0, 0) for i in (3, 4, 5)}
    assert m.lookup(struct.pack("<I", 9)) is None
    assert m.delete(struct.pack("<I", 4)) is True
    assert m.delete(struct.pack("<I", 4)) is False
    m.update(struct.pack("<I", 3), loader.ENDPOINT_INFO.pack(1, 2, 0, 0))
    assert m.lookup(struct.pack("<I", 3)) == loader.ENDPOINT_INFO.pack(1, 2, 0, 0)


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (lambda m: m.lookup(b"\0" * 3), "key of 3 bytes, map key is 4"),
        (lambda m: m.update(b"\0" * 4, b"\0" * 15), "value of 15 bytes, map value is 16"),
        (lambda m: m.lookup_percpu(b"\0" * 4), "not a per-CPU map"),
        (lambda m: m.update(b"\0" * 4, b"\0" * 16, 2), "update hb_endpoints: No such file"),  # BPF_EXIST
    ],
    ids=["short-key", "short-value", "not-percpu", "exist-flag"],
)
def test_map_misuse_is_a_bpf_error(datapath: Datapath, op: object, message: str) -> None:
    m = datapath.obj.map(loader.ENDPOINTS_MAP)
    with pytest.raises(BpfError, match=message):
        op(m)  # type: ignore[operator]


def test_percpu_lookup_has_one_value_per_possible_cpu(datapath: Datapath) -> None:
    m = datapath.obj.map(loader.LOST_MAP)
    assert m.percpu
    values = m.lookup_percpu(struct.pack("<I", 0))
    assert values is not None and len(values) == m.ncpus >= 1
    assert all(v == b"\0" * 8 for v in values)
    assert m.lookup_percpu(struct.pack("<I", 1)) is None  # past max_entries
    # writes go to every CPU's slot
    m.update(struct.pack("<I", 0), b"".join(struct.pack("<Q", i + 1) for i in range(m.ncpus)))
    lost = loader.read_lost(datapath.obj)
    assert lost.per_cpu == tuple(range(1, m.ncpus + 1))
    assert lost.total == sum(range(1, m.ncpus + 1))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (DatapathConfig(aggregation_level=7), "aggregation level 7"),
        (DatapathConfig(report_interval_ns=0), "report interval 0 ns"),
        (DatapathConfig(wakeup_bytes=-1), "wakeup bytes -1"),
    ],
    ids=["level", "interval", "wakeup"],
)
def test_invalid_config_is_refused(datapath: Datapath, config: DatapathConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        loader.write_config(datapath.obj, config)
    assert loader.read_config(datapath.obj) is None


def test_closed_object_refuses_use_and_closes_once(bpf_build_dir: Path) -> None:
    obj = BpfObject.open(bpf_build_dir / "datapath.o", None)
    m = obj.map(loader.CONFIG_MAP)
    assert obj.prog_fd(loader.PROG_FROM_ENDPOINT) >= 0
    obj.close()
    obj.close()
    assert obj.closed
    for use in (
        lambda: obj.map(loader.CONFIG_MAP),
        lambda: obj.map_fd(loader.CONFIG_MAP),
        lambda: obj.prog_fd(loader.PROG_FROM_ENDPOINT),
    ):
        with pytest.raises(BpfError, match="closed BPF object"):
            use()
    with pytest.raises(BpfError, match="use map hb_config of a closed BPF object"):
        m.lookup(b"\0" * 4)


def test_unknown_names_are_bpf_errors(datapath: Datapath) -> None:
    with pytest.raises(BpfError, match="find program nope"):
        datapath.obj.prog_fd("nope")
    with pytest.raises(BpfError, match="find map nope"):
        datapath.obj.map("nope")
