"""Selector semantics over Cilium label sets, and the namespace scoping rules."""

from __future__ import annotations

from typing import Any

import pytest

from observer.datapath.labels import LabelSet
from observer.errors import LabelError
from observer.policy.selectors import (
    LabelSelector,
    Operator,
    Requirement,
    SelectorError,
    parse_selector,
    parse_selector_key,
    scope_peer_selector,
)

WEB = LabelSet.parse(
    [
        "k8s:app=web",
        "k8s:tier=frontend",
        "k8s:io.kubernetes.pod.namespace=default",
        "container:build=42",
    ]
)
DB = LabelSet.parse(["k8s:app=db", "k8s:io.kubernetes.pod.namespace=prod"])
HOST = LabelSet.parse(["reserved:host"])
EMPTY = LabelSet()


SEMANTICS = [
    # (selector document, label set, expected)
    pytest.param({}, WEB, True, id="empty-matches-all"),
    pytest.param({}, EMPTY, True, id="empty-matches-empty"),
    pytest.param({"matchLabels": {"app": "web"}}, WEB, True, id="labels-any-source"),
    pytest.param({"matchLabels": {"app": "db"}}, WEB, False, id="labels-wrong-value"),
    pytest.param({"matchLabels": {"k8s:app": "web"}}, WEB, True, id="labels-k8s-source"),
    pytest.param({"matchLabels": {"any:app": "web"}}, WEB, True, id="labels-explicit-any"),
    pytest.param({"matchLabels": {"container:app": "web"}}, WEB, False, id="labels-other-source"),
    pytest.param({"matchLabels": {"build": "42"}}, WEB, True, id="any-matches-container-source"),
    pytest.param({"matchLabels": {"k8s:build": "42"}}, WEB, False, id="k8s-misses-container"),
    pytest.param({"matchLabels": {"app": "web", "tier": "frontend"}}, WEB, True, id="labels-and"),
    pytest.param({"matchLabels": {"app": "web", "tier": "backend"}}, WEB, False, id="and-fails"),
    pytest.param(
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]},
        WEB,
        True,
        id="in",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]},
        WEB,
        False,
        id="in-miss",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]},
        WEB,
        True,
        id="notin",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
        WEB,
        False,
        id="notin-miss",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["x"]}]},
        WEB,
        True,
        id="notin-absent-key-matches",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, WEB, True, id="exists"
    ),
    pytest.param(
        {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, DB, False, id="exists-miss"
    ),
    pytest.param(
        {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
        DB,
        True,
        id="does-not-exist",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "k8s:tier", "operator": "DoesNotExist"}]},
        WEB,
        False,
        id="does-not-exist-miss",
    ),
    pytest.param(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}],
        },
        WEB,
        True,
        id="labels-and-expressions",
    ),
    pytest.param(
        {"matchLabels": {"io.kubernetes.pod.namespace": "prod"}}, DB, True, id="namespace-label"
    ),
    pytest.param({"matchLabels": {"reserved:host": ""}}, HOST, True, id="reserved-host"),
    pytest.param({"matchLabels": {"reserved:host": ""}}, WEB, False, id="reserved-host-miss"),
    pytest.param({"matchLabels": {"host": ""}}, HOST, True, id="any-source-reserved"),
]


@pytest.mark.parametrize(("doc", "labels", "expected"), SEMANTICS)
def test_selector_semantics(doc: dict[str, Any], labels: LabelSet, expected: bool) -> None:
    assert parse_selector(doc).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("app", ("any", "app"), id="bare"),
        pytest.param("k8s:app", ("k8s", "app"), id="k8s"),
        pytest.param("any:app.kubernetes.io/name", ("any", "app.kubernetes.io/name"), id="any"),
        pytest.param("reserved:kube-apiserver", ("reserved", "kube-apiserver"), id="reserved"),
    ],
)
def test_selector_keys(text: str, expected: tuple[str, str]) -> None:
    assert parse_selector_key(text) == expected


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]},
            "matchExpressions[0].operator",
            "unknown operator 'Like'",
            id="operator",
        ),
        pytest.param({"matchLabel": {}}, "matchLabel", "unknown field", id="unknown-field"),
        pytest.param(
            {"matchLabels": {"app": 3}}, "matchLabels.app", "must be a string", id="int-value"
        ),
        pytest.param(
            {"matchLabels": {"-bad-": "x"}}, "matchLabels.-bad-", "invalid selector key", id="key"
        ),
        pytest.param(
            {"matchExpressions": [{"operator": "Exists"}]},
            "matchExpressions[0].key",
            "required",
            id="missing-key",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]},
            "matchExpressions[0].values",
            "needs at least one value",
            id="notin-empty",
        ),
        pytest.param(["app"], "", "must be a mapping", id="not-a-mapping"),
    ],
)
def test_selector_errors(doc: object, path: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(doc)
    assert info.value.path == path
    assert message in info.value.message
    assert isinstance(info.value, LabelError)


def test_requirement_validation() -> None:
    with pytest.raises(LabelError):
        Requirement("any", "a", Operator.IN, ())
    with pytest.raises(LabelError):
        Requirement("any", "a", Operator.EXISTS, ("x",))
    # Values are normalised: sorted and de-duplicated, so equal selectors compare equal.
    a = LabelSelector((Requirement("any", "a", Operator.IN, ("y", "x", "y")),))
    b = parse_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]})
    assert a == b and hash(a) == hash(b)


NS = "io.kubernetes.pod.namespace"


@pytest.mark.parametrize(
    ("doc", "namespace", "matches_default_web", "matches_prod_db", "matches_host"),
    [
        pytest.param({}, "default", True, False, False, id="empty-gets-own-namespace"),
        pytest.param({}, "", True, True, False, id="clusterwide-any-pod"),
        pytest.param({"matchLabels": {NS: "prod"}}, "default", False, True, False, id="names-ns"),
        pytest.param(
            {"matchExpressions": [{"key": f"k8s:{NS}", "operator": "Exists"}]},
            "default",
            True,
            True,
            False,
            id="ns-exists-all-namespaces",
        ),
        pytest.param(
            {"matchLabels": {"reserved:host": ""}}, "default", False, False, True, id="reserved"
        ),
        pytest.param(
            {
                "matchExpressions": [
                    {"key": "io.cilium.k8s.namespace.labels.team", "operator": "DoesNotExist"}
                ]
            },
            "default",
            True,
            True,
            True,  # as in Cilium: no namespace restriction is added, so reserved ones match too
            id="namespace-label-selector-not-scoped",
        ),
    ],
)
def test_scope_peer_selector(
    doc: dict[str, Any],
    namespace: str,
    matches_default_web: bool,
    matches_prod_db: bool,
    matches_host: bool,
) -> None:
    selector = scope_peer_selector(parse_selector(doc), namespace)
    assert selector.matches(WEB) is matches_default_web
    assert selector.matches(DB) is matches_prod_db
    assert selector.matches(HOST) is matches_host


def test_to_dict_round_trip() -> None:
    doc = {
        "matchLabels": {"k8s:app": "web"},
        "matchExpressions": [
            {"key": "any:tier", "operator": "NotIn", "values": ["a", "b"]},
            {"key": "k8s:x", "operator": "Exists"},
        ],
    }
    selector = parse_selector(doc)
    assert parse_selector(selector.to_dict()) == selector
