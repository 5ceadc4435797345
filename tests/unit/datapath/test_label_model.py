"""Cilium's label model: parsing, printing, sets and the labels derived for endpoints."""

from __future__ import annotations

import pytest

from observer.datapath.labels import (
    Label,
    LabelSet,
    endpoint_labels,
    parse_label,
    parse_user_label,
    user_labels_of,
)
from observer.errors import LabelError

GOOD = [
    ("org=empire", Label("k8s", "org", "empire")),
    ("org", Label("k8s", "org", "")),
    ("org=", Label("k8s", "org", "")),
    ("k8s:class=xwing", Label("k8s", "class", "xwing")),
    ("container:app=web", Label("container", "app", "web")),
    ("app.kubernetes.io/name=web-1", Label("k8s", "app.kubernetes.io/name", "web-1")),
    ("A_b.c-D=X.y_z-9", Label("k8s", "A_b.c-D", "X.y_z-9")),
    ("k8s:" + "a" * 63 + "=" + "b" * 63, Label("k8s", "a" * 63, "b" * 63)),
    ("cilium-generated:x=1", Label("cilium-generated", "x", "1")),
]


@pytest.mark.parametrize(("text", "want"), GOOD, ids=[g[0][:40] for g in GOOD])
def test_parse_user_label_accepts(text: str, want: Label) -> None:
    assert parse_user_label(text) == want


BAD = [
    ("=x", "empty key"),
    ("", "empty key"),
    ("k8s:", "empty key"),
    ("k8s:=x", "empty key"),
    ("a b=c", "key name"),
    ("-a=b", "key name"),
    ("a-=b", "key name"),
    ("a=b c", "value"),
    ("a=-b", "value"),
    ("a=b=c", "value"),
    ("a" * 64, "longer than 63"),
    ("a=" + "b" * 64, "longer than 63"),
    ("Foo.com/a=b", "prefix"),
    ("/a=b", "empty prefix"),
    ("a.com/=b", "empty key name"),
    ("K8S:a=b", "source"),
    ("reserved:host", "cannot be set"),
    ("any:app=web", "cannot be set"),
    ("io.kubernetes.pod.namespace=kube-system", "set by the agent"),
    ("k8s:io.cilium.k8s.policy.cluster=other", "set by the agent"),
]


@pytest.mark.parametrize(("text", "problem"), BAD, ids=[b[0][:30] or "<empty>" for b in BAD])
def test_parse_user_label_rejects(text: str, problem: str) -> None:
    with pytest.raises(LabelError) as info:
        parse_user_label(text)
    assert repr(text) in str(info.value)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("label", "text"),
    [
        (Label("k8s", "org", "empire"), "k8s:org=empire"),
        (Label("reserved", "host", ""), "reserved:host"),
        (Label("k8s", "app.kubernetes.io/name", "x"), "k8s:app.kubernetes.io/name=x"),
    ],
    ids=["with-value", "reserved-no-value", "prefixed-key"],
)
def test_label_str_round_trips(label: Label, text: str) -> None:
    assert str(label) == text
    assert parse_label(text) == label


def test_parse_label_accepts_reserved_source() -> None:
    assert parse_label("reserved:world") == Label("reserved", "world", "")


def test_labelset_is_sorted_deduplicated_and_hashable() -> None:
    a = LabelSet.parse(["k8s:org=empire", "k8s:class=tiefighter", "k8s:org=empire"])
    b = LabelSet.parse(["class=tiefighter", "org=empire"])
    assert a == b
    assert hash(a) == hash(b)
    assert a.to_strings() == ["k8s:class=tiefighter", "k8s:org=empire"]
    assert a.canonical() == "k8s:class=tiefighter;k8s:org=empire;"
    assert len({a, b}) == 1
    assert "k8s:org=empire" in a
    assert "k8s:org=alliance" not in a
    assert a.get("org") == "empire"
    assert a.get("org", source="container") is None


def test_labelset_rejects_conflicting_values() -> None:
    with pytest.raises(LabelError, match="conflicting labels"):
        LabelSet.parse(["org=empire", "org=alliance"])


def test_labelset_same_key_from_two_sources_is_allowed() -> None:
    s = LabelSet.parse(["k8s:app=a", "container:app=b"])
    assert s.get("app", "k8s") == "a"
    assert s.get("app", "container") == "b"


def test_labelset_merged_replaces_same_source_and_key() -> None:
    s = LabelSet.parse(["org=empire", "class=tiefighter"])
    merged = s.merged([Label("k8s", "org", "alliance")])
    assert merged.to_strings() == ["k8s:class=tiefighter", "k8s:org=alliance"]
    assert s.get("org") == "empire"


def test_endpoint_labels_adds_namespace_and_cluster() -> None:
    s = endpoint_labels("default", ["org=empire", "class=tiefighter"], "default")
    assert s.to_strings() == [
        "k8s:class=tiefighter",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.kubernetes.pod.namespace=default",
        "k8s:org=empire",
    ]
    assert user_labels_of(s) == ["k8s:class=tiefighter", "k8s:org=empire"]


@pytest.mark.parametrize(
    ("namespace", "cluster", "labels", "message"),
    [
        ("Default", "default", [], "invalid namespace 'Default'"),
        ("", "default", [], "invalid namespace ''"),
        ("default", "Prod_1", [], "invalid cluster name 'Prod_1'"),
        ("default", "default", ["=x"], "invalid label '=x'"),
    ],
    ids=["upper-namespace", "empty-namespace", "bad-cluster", "bad-label"],
)
def test_endpoint_labels_rejects(
    namespace: str, cluster: str, labels: list[str], message: str
) -> None:
    with pytest.raises(LabelError, match=message):
        endpoint_labels(namespace, labels, cluster)
