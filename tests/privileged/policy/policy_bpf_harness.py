"""Policy enforcement through BPF_PROG_TEST_RUN: the real datapath object, real maps.

Under test run the skb's ifindex is the loopback's (1), so "the endpoint at the hook" is
whichever endpoint ``hb_endpoints[1]`` names: :meth:`PolicyDatapath.send` points it at the
endpoint whose policy applies (the sender for egress at from-endpoint, the receiver for
ingress at to-endpoint).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from observer.bpf import loader, structs
from observer.bpf import policymaps as pm
from observer.bpf.loader import BpfObject
from observer.bpf.ringbuf import RingBuffer
from observer.policy import (
    CompiledPolicy,
    CompileOptions,
    EndpointView,
    Policy,
    compile_policies,
    load_policies,
)


def _load_packets() -> Any:
    """tests/privileged/bpf/packets.py (frame builders), loaded by path: the test dirs are
    not one package."""
    import importlib.util
    import sys

    name = "hubblectl_test_packets"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent.parent / "bpf" / "packets.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


P = _load_packets()

LO_IFINDEX = 1
TC_ACT_OK = 0
TC_ACT_SHOT = 2
FROM = loader.PROG_FROM_ENDPOINT
TO = loader.PROG_TO_ENDPOINT


def new_pin_root() -> Path:
    return Path(f"/sys/fs/bpf/hbpol-test-{secrets.token_hex(4)}")


@dataclass(frozen=True)
class Ep:
    id: int
    identity: int
    ip: str
    labels: tuple[str, ...]
    namespace: str = "default"

    def view(self) -> EndpointView:
        return EndpointView.create(self.id, self.identity, self.namespace, self.labels, [self.ip])


@dataclass
class Outcome:
    retval: int
    records: list[dict[str, Any]]

    @property
    def passed(self) -> bool:
        return self.retval == TC_ACT_OK

    def of_type(self, event_type: int) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == event_type]

    @property
    def verdict(self) -> dict[str, Any] | None:
        found = self.of_type(structs.EVENT_POLICY_VERDICT)
        assert len(found) <= 1, found
        return found[0] if found else None

    @property
    def drop(self) -> dict[str, Any] | None:
        found = self.of_type(structs.EVENT_DROP)
        assert len(found) <= 1, found
        return found[0] if found else None


class PolicyDatapath:
    def __init__(self, obj_path: Path, pin_root: Path | None) -> None:
        self.obj = BpfObject.open(obj_path, pin_root, ring_bytes=1 << 20)
        ring = self.obj.map(loader.RING_MAP)
        self.rb = RingBuffer(ring.fd, ring.max_entries)
        self.fds = {name: self.obj.prog_fd(name) for name in (FROM, TO)}
        self.maps = pm.PolicyMaps(self.obj)
        self.compiled: CompiledPolicy | None = None
        self.endpoints: list[Ep] = []

    def close(self) -> None:
        self.rb.close()
        self.obj.close()

    # -- policy ----------------------------------------------------------
    def enforce(
        self,
        yaml_text: str,
        endpoints: Sequence[Ep],
        *,
        audit: bool = False,
        incremental: bool = True,
    ) -> pm.WriteStats:
        """Compile the policies for the endpoints and switch the datapath to them."""
        from observer.agent.policy import StableIds, build_image, stable_ids_for

        policies: list[Policy] = load_policies(yaml_text, "test.yaml") if yaml_text.strip() else []
        self.endpoints = list(endpoints)
        compiled = compile_policies(
            policies,
            [e.view() for e in endpoints],
            {
                e.identity: [*e.labels, f"k8s:io.kubernetes.pod.namespace={e.namespace}"]
                for e in endpoints
            },
            options=CompileOptions(audit_mode=audit),
            previous=self.compiled if incremental else None,
        )
        self.ids = stable_ids_for(compiled, getattr(self, "ids", StableIds()))
        self.compiled = compiled
        return self.maps.switch_to(build_image(compiled, self.ids))

    # -- traffic ---------------------------------------------------------
    def at(self, ep: Ep) -> None:
        loader.set_endpoint(self.obj, LO_IFINDEX, ep.id, ep.identity)

    def run(self, frame: bytes, prog: str) -> Outcome:
        res = loader.prog_test_run(self.fds[prog], frame)
        return Outcome(res.retval, [P.decode(r) for r in self.rb.drain()])

    def send(self, frame: bytes, at: Ep, prog: str) -> Outcome:
        self.at(at)
        return self.run(frame, prog)

    def flush_ct(self) -> None:
        m = self.obj.map(loader.CT_MAP)
        for key in list(m.keys()):
            m.delete(key)

    def ct_size(self) -> int:
        return sum(1 for _ in self.obj.map(loader.CT_MAP))


def tcp(
    src: Ep | str, dst: Ep | str, dport: int, flags: int = structs.TCP_SYN, sport: int = 40000
) -> bytes:
    s = src.ip if isinstance(src, Ep) else src
    d = dst.ip if isinstance(dst, Ep) else dst
    return bytes(P.tcp_frame(s, d, sport, dport, flags))


def udp(src: Ep | str, dst: Ep | str, dport: int, sport: int = 40000) -> bytes:
    s = src.ip if isinstance(src, Ep) else src
    d = dst.ip if isinstance(dst, Ep) else dst
    return bytes(P.udp_frame(s, d, sport, dport))


def icmp_echo(src: Ep | str, dst: Ep | str, ident: int = 7) -> bytes:
    s = src.ip if isinstance(src, Ep) else src
    d = dst.ip if isinstance(dst, Ep) else dst
    v6 = ":" in s
    return bytes(P.icmp_frame(s, d, 128 if v6 else 8, ident=ident, seq=1))
