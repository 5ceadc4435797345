"""Every example in docs/policy.md is loaded, compiled and traced: the doc cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from observer.policy.compiler import EndpointView, compile_policies
from observer.policy.loader import load_policies
from observer.policy.model import Protocol
from observer.policy.trace import Local, Peer, Remote, peer_for_ip, trace

DOC = Path(__file__).resolve().parents[3] / "docs" / "policy.md"

ENDPOINTS = {
    "default/deathstar": (1, 1001, "10.0.0.1", ("k8s:org=empire", "k8s:class=deathstar")),
    "default/tiefighter": (2, 1002, "10.0.0.2", ("k8s:org=empire", "k8s:class=tiefighter")),
    "default/xwing": (3, 1003, "10.0.0.3", ("k8s:org=alliance", "k8s:class=xwing")),
    "other/probe": (4, 1004, "10.0.0.4", ("k8s:app=probe",)),
}
VERDICT = re.compile(r"^(\S+) -> (\S+) (tcp|udp|sctp)/(\d+): (ALLOWED|DENIED)$")


def _examples() -> list[tuple[str, str, list[str]]]:
    text = DOC.read_text()
    blocks = re.findall(r"```(yaml|verdicts)\n(.*?)```", text, flags=re.S)
    out: list[tuple[str, str, list[str]]] = []
    for (kind, body), nxt in zip(blocks, [*blocks[1:], ("", "")], strict=True):
        if kind == "yaml":
            assert nxt[0] == "verdicts", "every yaml example is followed by its verdicts"
            name = re.search(r"name: (\S+)", body)
            assert name is not None
            out.append((name.group(1), body, [ln for ln in nxt[1].splitlines() if ln.strip()]))
    return out


EXAMPLES = _examples()


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize(("name", "yaml_text", "verdicts"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_verdicts(name: str, yaml_text: str, verdicts: list[str]) -> None:
    policies = load_policies(yaml_text, f"docs/policy.md#{name}")
    views = []
    for key, (ep_id, identity, ip, labels) in ENDPOINTS.items():
        ns = key.split("/")[0]
        views.append(EndpointView(id=ep_id, identity=identity, namespace=ns,
                                  labels=(*labels, f"k8s:io.kubernetes.pod.namespace={ns}"), ips=(ip,)))
    identities = {v.identity: v.labels for v in views}
    compiled = compile_policies(policies, views, identities)

    def peer(text: str) -> Peer:
        if text in ENDPOINTS:
            return Local(ENDPOINTS[text][0])
        if text == "host":
            return Remote(1)
        return peer_for_ip(compiled, text)

    assert verdicts
    for line in verdicts:
        m = VERDICT.match(line)
        assert m, f"bad verdict line {line!r}"
        src, dst, proto, port, want = m.groups()
        got = trace(compiled, peer(src), peer(dst), int(port), Protocol[proto.upper()])
        assert ("ALLOWED" if got.allowed else "DENIED") == want, f"{line}\n" + "\n".join(got.explanation)
