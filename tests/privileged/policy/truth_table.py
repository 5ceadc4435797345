"""Truth tables for network policy, in the style of the Kubernetes NetworkPolicy e2e suite.

Three parts:

* **Model** (:func:`expected_matrix`): an independent, deliberately simple reading of the
  CiliumNetworkPolicy / Kubernetes NetworkPolicy subset the truth-table cases use, written
  from the Cilium and Kubernetes documentation, not from observer/policy. It works on the
  policy documents as dicts, the same dicts the test dumps to YAML and applies.
* **Tables** (:func:`render_tables`, :func:`render_comparison`): rows = from, columns = to,
  ``.`` = allowed, ``X`` = blocked, one table per port/protocol.
* **Cluster** (:class:`Cluster`): the 9 pods (x, y, z x a, b, c) as endpoints of a real
  agent, each with one server process (TCP and UDP on 80 and 81) and one persistent prober
  process (probes every target in parallel threads and answers in JSON), both run with
  ``ip netns exec``; :meth:`Cluster.probe` measures a full matrix, :meth:`Cluster.trace`
  asks the agent's TracePolicy RPC for the same matrix.

Semantics the model encodes (and the reason for each):

* A pod is isolated for a direction when any policy selecting it enforces that direction
  (Kubernetes: ``policyTypes``, default Ingress plus Egress when egress rules exist;
  Cilium: the spec has the key ``ingress``/``ingressDeny`` (``egress``/``egressDeny``),
  deny-only specs included, unless ``enableDefaultDeny`` turns that direction off).
  Traffic then needs an allow rule of a selecting policy, and no deny rule may match (deny
  wins over allow, whatever the kinds).
* A connection passes when egress at the source and ingress at the destination pass;
  replies are not subject to policy.
* A namespaced policy selects subjects of its own namespace only; Cilium even replaces a
  namespace ``matchLabels`` of an ``endpointSelector`` by the policy's namespace. A
  CiliumClusterwideNetworkPolicy selects subjects in every namespace.
* Cilium ``fromEndpoints``/``toEndpoints`` without a namespace label select pods of the
  policy's namespace (every namespace for a clusterwide policy); with
  ``io.kubernetes.pod.namespace`` they select by it. A rule with
  ``toPorts`` but no peer field allows those ports from/to anyone; an empty rule ``{}``
  allows nothing. ``protocol`` absent or ANY = TCP and UDP (and SCTP).
* Kubernetes ``from``/``to`` absent or empty = every peer; ``podSelector`` alone = pods of
  the policy's namespace; ``namespaceSelector`` matches ``kubernetes.io/metadata.name``;
  both in one peer = AND. ``ports`` absent = every port; protocol defaults to TCP.
* CIDR peers (``fromCIDRSet``/``toCIDRSet``, ``ipBlock``): Cilium documents CIDR rules as
  "used to describe the relationship to or from external services if the remote peer is
  not an endpoint": a pod's address resolves to the pod's identity, never to a CIDR
  identity, so CIDR rules never match pods. ``Semantics(cidr_selects_pods=True)`` is the
  reading the Kubernetes e2e suite takes for ``ipBlock`` with pod IPs (it expects them to
  match); it is kept here to show where the two disagree.
* A pod reaching its own address stays in its netns (loopback) and never meets the
  datapath: always allowed (the Kubernetes e2e suite ignores loopback for this reason).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from policy_agent_harness import PolicyAgent

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
POD_KEYS = tuple(f"{ns}/{name}" for ns in NAMESPACES for name in POD_NAMES)
PORTS = (80, 81)
TARGETS = ("tcp/80", "tcp/81", "udp/80", "udp/81")

POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

#: (from, to, "tcp/80") -> allowed
Cell = tuple[str, str, str]
Matrix = dict[Cell, bool]

# --------------------------------------------------------------------------- processes

# One per pod: TCP and UDP on every port given; each request line is answered with
# "<pod> <proto>/<port> <request line>" so a prober knows who answered.
SERVER_PY = r"""
import socket, sys, threading
pod = sys.argv[1]
ports = [int(p) for p in sys.argv[2:]]

def tcp_conn(c, port):
    try:
        c.settimeout(5)
        data = b""
        while not data.endswith(b"\n"):
            chunk = c.recv(512)
            if not chunk:
                break
            data += chunk
        c.sendall(("%s tcp/%d " % (pod, port)).encode() + data)
    except OSError:
        pass
    finally:
        c.close()

def tcp_serve(s, port):
    while True:
        c, _ = s.accept()
        threading.Thread(target=tcp_conn, args=(c, port), daemon=True).start()

def udp_serve(s, port):
    while True:
        data, peer = s.recvfrom(2048)
        try:
            s.sendto(("%s udp/%d " % (pod, port)).encode() + data, peer)
        except OSError:
            pass

threads = []
for port in ports:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", port))
    t.listen(256)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    threads.append(threading.Thread(target=tcp_serve, args=(t, port), daemon=True))
    threads.append(threading.Thread(target=udp_serve, args=(u, port), daemon=True))
for th in threads:
    th.start()
print("ready", flush=True)
for th in threads:
    th.join()
"""

# One per pod, for the life of the pod. Reads one JSON request per line:
#   {"timeout": s, "retry_timeout": s, "probes": [[dst, ip, proto, port, sport], ...]}
# and answers one JSON line: {"results": [[ok, reason, attempts], ...]} in the same order.
# Every attempt binds its own source port (sport, then sport + 1 for the retry): the test
# hands out ports that are never reused, so no probe can ride on the conntrack entry of an
# earlier connection. A failed attempt is retried once; a success is final.
PROBER_PY = r"""
import errno, json, socket, sys, time
from concurrent.futures import ThreadPoolExecutor
src = sys.argv[1]
pool = ThreadPoolExecutor(max_workers=64)

def attempt(dst, ip, proto, port, sport, timeout):
    token = ("%s>%s %s/%d %d\n" % (src, dst, proto, port, sport)).encode()
    want = ("%s %s/%d " % (dst, proto, port)).encode() + token
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
        s.settimeout(timeout)
        s.connect((ip, port))
        s.sendall(token)
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            s.settimeout(left)
            chunk = s.recv(2048)
            if not chunk:
                break
            data += chunk
            if proto == "udp":
                break
        return ("ok", "ok") if data == want else ("mismatch", repr(data[:80]))
    except socket.timeout:
        return ("fail", "timeout")
    except ConnectionRefusedError:
        return ("fail", "refused")
    except ConnectionResetError:
        return ("fail", "reset")
    except OSError as e:
        return ("fail", errno.errorcode.get(e.errno or 0, str(e)))
    finally:
        s.close()

def probe(item, timeout, retry_timeout):
    dst, ip, proto, port, sport = item
    status, reason = attempt(dst, ip, proto, port, sport, timeout)
    if status == "fail":
        status, reason = attempt(dst, ip, proto, port, sport + 1, retry_timeout)
        return [status == "ok", reason, 2]
    return [status == "ok", reason, 1]

print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    futures = [pool.submit(probe, p, req["timeout"], req["retry_timeout"]) for p in req["probes"]]
    print(json.dumps({"results": [f.result() for f in futures]}), flush=True)
"""


def _read_line(proc: subprocess.Popen[str], timeout: float, what: str) -> str:
    """One line of ``proc``'s stdout within ``timeout`` seconds. (select() sees the pipe,
    not Python's buffer: fine here, the processes answer one line per request.)"""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"{what}: no answer within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"{what}: exited ({proc.poll()})")
    return line


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(Exception):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


# --------------------------------------------------------------------------- pods


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    #: User labels (without the namespace label), e.g. {"pod": "a"}.
    labels: Mapping[str, str]
    ip: str = ""
    netns: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selector_labels(self) -> dict[str, str]:
        """What endpoint selectors see: the labels plus the namespace label."""
        return {**self.labels, POD_NAMESPACE_LABEL: self.namespace}

    def namespace_labels(self) -> dict[str, str]:
        """What a Kubernetes namespaceSelector sees (the automatic name label)."""
        return {NAMESPACE_NAME_LABEL: self.namespace}


def default_labels(key: str) -> dict[str, str]:
    return {"pod": key.split("/", 1)[1]}


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Semantics:
    #: Whether CIDR peers (fromCIDRSet, ipBlock) match pod addresses (see module docstring).
    cidr_selects_pods: bool = False


def policy_id(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of a policy document."""
    meta = doc["metadata"]
    return (str(doc["kind"]), str(meta.get("namespace", "")), str(meta["name"]))


def _bare(key: str) -> str:
    """Selector keys may carry a label source (``k8s:pod``, ``any:pod``)."""
    for prefix in ("k8s:", "any:"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels + matchExpressions); {} matches everything."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(_bare(key)) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = _bare(expr["key"]), expr["operator"]
        values = [str(v) for v in expr.get("values") or []]
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _selector_keys(selector: Mapping[str, Any]) -> set[str]:
    keys = {_bare(k) for k in selector.get("matchLabels") or {}}
    keys |= {_bare(e["key"]) for e in selector.get("matchExpressions") or []}
    return keys


def _in_cidr(ip: str, block: Mapping[str, Any]) -> bool:
    addr = ipaddress.ip_address(ip)
    net = ipaddress.ip_network(block["cidr"])
    if addr.version != net.version or addr not in net:
        return False
    return not any(
        addr in ipaddress.ip_network(e) for e in block.get("except") or [] if e is not None
    )


def _port_matches(spec: Mapping[str, Any], proto: str, port: int, default_proto: str) -> bool:
    want = str(spec.get("protocol") or default_proto).lower()
    if want != "any" and want != proto:
        return False
    lo = int(spec.get("port") or 0)
    if lo == 0:
        return True
    hi = int(spec.get("endPort") or lo)
    return lo <= port <= hi


def _cilium_rule_matches(
    rule: Mapping[str, Any] | None,
    policy_ns: str,
    peer: Pod,
    proto: str,
    port: int,
    ingress: bool,
    sem: Semantics,
) -> bool:
    rule = rule or {}
    prefix = "from" if ingress else "to"
    peer_fields = [f"{prefix}{f}" for f in ("Endpoints", "CIDR", "CIDRSet", "Entities")]
    to_ports = rule.get("toPorts") or []
    if any(f in rule for f in peer_fields):
        peer_ok = False
        for sel in rule.get(f"{prefix}Endpoints") or []:
            sel = sel or {}
            # a clusterwide policy's selectors span every namespace
            same_ns = (
                not policy_ns
                or POD_NAMESPACE_LABEL in _selector_keys(sel)
                or peer.namespace == policy_ns
            )
            peer_ok |= same_ns and selector_matches(sel, peer.selector_labels())
        for cidr in rule.get(f"{prefix}CIDR") or []:
            peer_ok |= sem.cidr_selects_pods and _in_cidr(peer.ip, {"cidr": cidr})
        for block in rule.get(f"{prefix}CIDRSet") or []:
            peer_ok |= sem.cidr_selects_pods and _in_cidr(peer.ip, block)
        for entity in rule.get(f"{prefix}Entities") or []:
            peer_ok |= entity in ("all", "cluster")
    else:
        peer_ok = bool(to_ports)  # L4-only rule: any peer; an empty rule: nobody
    if not peer_ok:
        return False
    if not to_ports:
        return True
    return any(
        _port_matches(p, proto, port, "any") for tp in to_ports for p in tp.get("ports") or []
    )


def _k8s_rule_matches(
    rule: Mapping[str, Any] | None,
    policy_ns: str,
    peer: Pod,
    proto: str,
    port: int,
    ingress: bool,
    sem: Semantics,
) -> bool:
    rule = rule or {}
    peers = rule.get("from" if ingress else "to") or []
    peer_ok = not peers
    for item in peers:
        if "ipBlock" in item:
            peer_ok |= sem.cidr_selects_pods and _in_cidr(peer.ip, item["ipBlock"])
            continue
        if "namespaceSelector" in item:
            ns_ok = selector_matches(item["namespaceSelector"], peer.namespace_labels())
        else:
            ns_ok = peer.namespace == policy_ns
        pod_ok = selector_matches(item.get("podSelector"), peer.selector_labels())
        peer_ok |= ns_ok and pod_ok
    if not peer_ok:
        return False
    ports = rule.get("ports") or []
    return not ports or any(_port_matches(p, proto, port, "tcp") for p in ports)


@dataclass(frozen=True, slots=True)
class _Say:
    """One policy's word on one (subject, peer, direction, port): None = not selecting."""

    enforces: bool
    allows: bool
    denies: bool


def _policy_says(
    doc: Mapping[str, Any],
    subject: Pod,
    peer: Pod,
    proto: str,
    port: int,
    ingress: bool,
    sem: Semantics,
) -> _Say | None:
    kind, ns, _ = policy_id(doc)
    spec = doc["spec"]
    if ns and subject.namespace != ns:  # a namespaced policy selects its namespace only
        return None
    if kind == "NetworkPolicy":
        if not selector_matches(spec.get("podSelector"), subject.selector_labels()):
            return None
        types = spec.get("policyTypes")
        if types is None:
            types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        section = "ingress" if ingress else "egress"
        if section.capitalize() not in types:
            return _Say(False, False, False)
        allows = any(
            _k8s_rule_matches(r, ns, peer, proto, port, ingress, sem)
            for r in spec.get(section) or []
        )
        return _Say(True, allows, False)
    if kind in ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"):
        selector = dict(spec.get("endpointSelector") or {})
        if ns:
            # Cilium overwrites a namespace matchLabel of a namespaced policy's
            # endpointSelector with the policy's own namespace (and logs a warning).
            selector["matchLabels"] = {
                k: v
                for k, v in (selector.get("matchLabels") or {}).items()
                if _bare(k) != POD_NAMESPACE_LABEL
            }
        if not selector_matches(selector, subject.selector_labels()):
            return None
        allow_key, deny_key = ("ingress", "ingressDeny") if ingress else ("egress", "egressDeny")
        # enableDefaultDeny: {<direction>: false} keeps deny rules, drops the default deny
        default_deny = (spec.get("enableDefaultDeny") or {}).get(allow_key, True) is not False
        enforces = (allow_key in spec or deny_key in spec) and default_deny
        allows = any(
            _cilium_rule_matches(r, ns, peer, proto, port, ingress, sem)
            for r in spec.get(allow_key) or []
        )
        denies = any(
            _cilium_rule_matches(r, ns, peer, proto, port, ingress, sem)
            for r in spec.get(deny_key) or []
        )
        return _Say(enforces, allows, denies)
    raise ValueError(f"model: unsupported kind {kind}")


def _direction_allows(
    docs: Iterable[Mapping[str, Any]],
    subject: Pod,
    peer: Pod,
    proto: str,
    port: int,
    ingress: bool,
    sem: Semantics,
) -> bool:
    enforced = allowed = denied = False
    for doc in docs:
        say = _policy_says(doc, subject, peer, proto, port, ingress, sem)
        if say is None:
            continue
        enforced |= say.enforces
        allowed |= say.allows
        denied |= say.denies
    if denied:
        return False
    return allowed or not enforced


def expected_matrix(
    pods: Sequence[Pod], docs: Sequence[Mapping[str, Any]], sem: Semantics = Semantics()
) -> Matrix:
    """The model's verdict for every (from, to, target)."""
    out: Matrix = {}
    for src in pods:
        for dst in pods:
            for target in TARGETS:
                proto, port_text = target.split("/")
                port = int(port_text)
                if src.key == dst.key:
                    out[(src.key, dst.key, target)] = True  # loopback: never policy
                    continue
                out[(src.key, dst.key, target)] = _direction_allows(
                    docs, src, dst, proto, port, False, sem
                ) and _direction_allows(docs, dst, src, proto, port, True, sem)
    return out


def all_allowed(keys: Sequence[str]) -> Matrix:
    return {(s, d, t): True for s in keys for d in keys for t in TARGETS}


# --------------------------------------------------------------------------- tables


def _table(title: str, keys: Sequence[str], cell: Mapping[tuple[str, str], str]) -> list[str]:
    width = max(len(k) for k in keys) + 1
    lines = [title, " " * width + " ".join(f"{k:<{width - 1}}" for k in keys)]
    for src in keys:
        row = " ".join(f"{cell[(src, dst)]:<{width - 1}}" for dst in keys)
        lines.append(f"{src:<{width}}{row}")
    return lines


def render_tables(matrix: Mapping[Cell, bool], keys: Sequence[str], title: str) -> str:
    """One truth table per target, side by side (rows = from, cols = to, X = blocked)."""
    blocks = [
        _table(
            f"{title} {target}",
            keys,
            {(s, d): "." if matrix[(s, d, target)] else "X" for s in keys for d in keys},
        )
        for target in TARGETS
    ]
    return _side_by_side(blocks)


def _side_by_side(blocks: Sequence[list[str]], gap: int = 4) -> str:
    width = max(len(line) for block in blocks for line in block) + gap
    rows = max(len(block) for block in blocks)
    out = []
    for i in range(rows):
        out.append(
            "".join((block[i] if i < len(block) else "").ljust(width) for block in blocks).rstrip()
        )
    return "\n".join(out)


def render_comparison(
    expected: Mapping[Cell, bool],
    observed: Mapping[Cell, bool],
    keys: Sequence[str],
    *,
    expected_name: str = "expected",
    observed_name: str = "observed",
    details: Mapping[Cell, str] | None = None,
    limit: int = 60,
) -> str:
    """Expected, observed and comparison tables for every target with a disagreement
    (comparison: ``.`` = agree, ``X`` = disagree), then one line per disagreement (at most
    ``limit`` of them)."""
    bad = sorted(c for c in expected if expected[c] != observed[c])
    if not bad:
        return "no disagreement"
    out: list[str] = []
    for target in TARGETS:
        if not any(c[2] == target for c in bad):
            continue
        blocks = []
        for name, m in ((expected_name, expected), (observed_name, observed)):
            blocks.append(
                _table(
                    f"{name} {target}",
                    keys,
                    {(s, d): "." if m[(s, d, target)] else "X" for s in keys for d in keys},
                )
            )
        blocks.append(
            _table(
                f"comparison {target}",
                keys,
                {
                    (s, d): "." if expected[(s, d, target)] == observed[(s, d, target)] else "X"
                    for s in keys
                    for d in keys
                },
            )
        )
        out.append(_side_by_side(blocks))
    word = {True: "allowed", False: "blocked"}
    for c in bad[:limit]:
        extra = f" ({details[c]})" if details and c in details else ""
        out.append(
            f"  {c[0]} -> {c[1]} {c[2]}: {expected_name} {word[expected[c]]}, "
            f"{observed_name} {word[observed[c]]}{extra}"
        )
    if len(bad) > limit:
        out.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(out)


# --------------------------------------------------------------------------- cluster


@dataclass(frozen=True, slots=True)
class ProbeResult:
    allowed: bool
    #: "ok", "timeout", "refused", "reset", an errno name, or "mismatch" details.
    reason: str
    attempts: int


@dataclass(frozen=True, slots=True)
class TraceResult:
    allowed: bool
    verdict: str
    decided_by: str


@dataclass(frozen=True, slots=True)
class _PodProcs:
    server: subprocess.Popen[str]
    prober: subprocess.Popen[str]


@dataclass
class Cluster:
    """9 pods of a real agent, each serving TCP/UDP 80 and 81, with a prober per pod."""

    agent: PolicyAgent
    stub: Any
    probe_timeout: float = 1.0
    retry_timeout: float = 2.0
    pods: dict[str, Pod] = field(default_factory=dict)
    procs: dict[str, _PodProcs] = field(default_factory=dict)
    #: Next source port to hand out, per source pod (never reused: see PROBER_PY).
    next_sport: dict[str, int] = field(default_factory=dict)

    # -- pods --------------------------------------------------------------
    def add_pod(self, key: str, labels: Mapping[str, str]) -> Pod:
        ep = self.agent.create(key, *(f"{k}={v}" for k, v in sorted(labels.items())))
        ns, name = key.split("/", 1)
        pod = Pod(ns, name, dict(labels), str(ep["ipv4"]), str(ep["netns"]))
        self.pods[key] = pod
        self._start_procs(pod)
        return pod

    def remove_pod(self, key: str) -> None:
        procs = self.procs.pop(key, None)
        if procs is not None:
            _kill(procs.server)
            _kill(procs.prober)
        self.pods.pop(key, None)
        self.agent.cli("endpoint", "delete", key)

    def relabel(self, key: str, labels: Mapping[str, str]) -> Pod:
        """There is no RPC to change an endpoint's labels: delete and re-create it."""
        self.remove_pod(key)
        return self.add_pod(key, labels)

    def _spawn(self, pod: Pod, script: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", pod.netns, sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )

    def _start_procs(self, pod: Pod) -> None:
        server = self._spawn(pod, SERVER_PY, pod.key, *map(str, PORTS))
        try:
            prober = self._spawn(pod, PROBER_PY, pod.key)
        except BaseException:
            _kill(server)
            raise
        self.procs[pod.key] = _PodProcs(server, prober)
        self.next_sport.setdefault(pod.key, 20000)
        _read_line(server, 30, f"server of {pod.key}")
        _read_line(prober, 30, f"prober of {pod.key}")

    def close(self) -> None:
        for procs in self.procs.values():
            _kill(procs.server)
            _kill(procs.prober)
        self.procs.clear()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k in POD_KEYS if k in self.pods)

    def pod_list(self) -> list[Pod]:
        return [self.pods[k] for k in self.keys]

    # -- probing -----------------------------------------------------------
    def probe(self) -> dict[Cell, ProbeResult]:
        """Every (from, to, target), all sources at once, every target in parallel."""
        plan: dict[str, list[Cell]] = {}
        for src in self.keys:
            cells: list[Cell] = []
            probes: list[list[Any]] = []
            for dst in self.keys:
                for target in TARGETS:
                    proto, port = target.split("/")
                    sport = self.next_sport[src]
                    self.next_sport[src] = sport + 2
                    if sport + 1 > 65000:
                        raise AssertionError(f"source ports of {src} exhausted")
                    cells.append((src, dst, target))
                    probes.append([dst, self.pods[dst].ip, proto, int(port), sport])
            plan[src] = cells
            req = {
                "timeout": self.probe_timeout,
                "retry_timeout": self.retry_timeout,
                "probes": probes,
            }
            stdin = self.procs[src].prober.stdin
            assert stdin is not None
            stdin.write(json.dumps(req) + "\n")
            stdin.flush()
        out: dict[Cell, ProbeResult] = {}
        limit = 10 + 2 * (self.probe_timeout + self.retry_timeout)
        for src, cells in plan.items():
            answer = json.loads(_read_line(self.procs[src].prober, limit, f"prober of {src}"))
            for cell, (ok, reason, attempts) in zip(cells, answer["results"], strict=True):
                out[cell] = ProbeResult(bool(ok), str(reason), int(attempts))
        return out

    # -- policy ------------------------------------------------------------
    def trace(self) -> dict[Cell, TraceResult]:
        """TracePolicy for every (from, to, target) with from != to, over gRPC."""
        from observer.api.v1.hubblectl import agent_pb2

        cells = [(s, d, t) for s in self.keys for d in self.keys if s != d for t in TARGETS]

        def one(cell: Cell) -> TraceResult:
            proto, port = cell[2].split("/")
            resp = self.stub.TracePolicy(
                agent_pb2.TracePolicyRequest(
                    source=cell[0], destination=cell[1], dport=int(port), protocol=proto
                ),
                timeout=30,
            )
            return TraceResult(bool(resp.allowed), str(resp.verdict), str(resp.decided_by))

        with ThreadPoolExecutor(max_workers=4) as pool:
            return dict(zip(cells, pool.map(one, cells), strict=True))


@contextlib.contextmanager
def running_cluster(agent: PolicyAgent, stub: Any) -> Iterator[Cluster]:
    """The 9 pods with their processes; every process killed on the way out (the
    endpoints themselves go with the agent's close())."""
    cluster = Cluster(agent, stub)
    try:
        for key in POD_KEYS:
            cluster.add_pod(key, default_labels(key))
        yield cluster
    finally:
        cluster.close()
