"""The label-selector parser and matcher (observer.filters.labels)."""

from __future__ import annotations

import pytest

from observer.errors import LabelError
from observer.filters.labels import Op, parse_selector, split_label

LABELS = [
    "k8s:app=web",
    "k8s:io.kubernetes.pod.namespace=prod",
    "k8s:app.kubernetes.io/name=frontend",
    "k8s:tier=",
    "k8s:replicas=3",
    "container:app=sidecar",
    "reserved:host",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("k8s:app=web", ("k8s", "app", "web"), id="prefixed"),
        pytest.param("reserved:world", ("reserved", "world", ""), id="no-value"),
        pytest.param("app=web", ("unspec", "app", "web"), id="no-source"),
        pytest.param("app=a:b", ("unspec", "app", "a:b"), id="colon-in-value"),
        pytest.param("k8s:a=b=c", ("k8s", "a", "b=c"), id="eq-in-value"),
        pytest.param("$host", ("reserved", "host", ""), id="dollar-reserved"),
        pytest.param("reserved:=x", ("reserved", "x", ""), id="reserved-eq-key"),
        pytest.param("", ("unspec", "", ""), id="empty"),
    ],
)
def test_split_label(text: str, expected: tuple[str, str, str]) -> None:
    assert split_label(text) == expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("", True, id="empty-everything"),
        pytest.param("  ", True, id="blank-everything"),
        pytest.param("app", True, id="exists-any-source"),
        pytest.param("k8s:app", True, id="exists-source"),
        pytest.param("label:app", False, id="exists-other-source"),
        pytest.param("!app", False, id="not-exists-present"),
        pytest.param("!k8s:missing", True, id="not-exists-absent"),
        pytest.param("app=web", True, id="equals-first-of-any-source"),
        pytest.param("app=sidecar", False, id="any-source-first-label-decides"),
        pytest.param("container:app=sidecar", True, id="equals-source"),
        pytest.param("app==web", True, id="double-equals"),
        pytest.param("app!=web", False, id="not-equals-same"),
        pytest.param("app!=db", True, id="not-equals-other"),
        pytest.param("missing!=x", True, id="not-equals-absent"),
        pytest.param("app in (db, web)", True, id="in"),
        pytest.param("app in (db)", False, id="in-miss"),
        pytest.param("missing in (x)", False, id="in-absent"),
        pytest.param("app notin (db)", True, id="notin"),
        pytest.param("app notin (web,db)", False, id="notin-miss"),
        pytest.param("missing notin (x)", True, id="notin-absent"),
        pytest.param("tier=", True, id="empty-value"),
        pytest.param("tier in ()", True, id="empty-set-is-empty-value"),
        pytest.param("tier in (x,)", True, id="trailing-comma-empty-value"),
        pytest.param("replicas>2", True, id="gt"),
        pytest.param("replicas>3", False, id="gt-equal"),
        pytest.param("replicas<4", True, id="lt"),
        pytest.param("app>1", False, id="gt-non-integer-label"),
        pytest.param("k8s:app.kubernetes.io/name=frontend", True, id="key-with-prefix"),
        pytest.param("io.kubernetes.pod.namespace=prod", True, id="dotted-key-any-source"),
        pytest.param("k8s:io.kubernetes.pod.namespace in (prod, dev)", True, id="dotted-key-in"),
        pytest.param("reserved:host", True, id="reserved"),
        pytest.param("host", True, id="reserved-any-source"),
        pytest.param("k8s:host", False, id="reserved-wrong-source"),
        pytest.param("app=web,tier,!missing", True, id="and-all"),
        pytest.param("app=web, tier=x", False, id="and-one-fails"),
        pytest.param("app = web , k8s:tier == ", True, id="spaces"),
        pytest.param("any:app=web", True, id="explicit-any"),
        pytest.param("app=in", False, id="keyword-as-value"),
    ],
)
def test_selector_matches(selector: str, expected: bool) -> None:
    assert parse_selector(selector).matches(LABELS) is expected


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        pytest.param("a in b", "expected '('", id="in-without-paren"),
        pytest.param("a in (b", "expected ',', ')'", id="unclosed"),
        pytest.param("a in (b c)", "expected ',', ')'", id="set-missing-comma"),
        pytest.param("a,", "expected a label key", id="trailing-comma"),
        pytest.param(",a", "expected a label key", id="leading-comma"),
        pytest.param("!a=b", "after '!a'", id="negated-with-value"),
        pytest.param("a b", "expected one of", id="two-words"),
        pytest.param("a=b=c", "expected ','", id="two-equals"),
        pytest.param("a=(b)", "expected a value", id="paren-value"),
        pytest.param("in", "expected a label key", id="keyword-key"),
        pytest.param("a>b", "must be an integer", id="gt-not-int"),
        pytest.param("k8s:", "empty key name", id="empty-key"),
        pytest.param(":a", "empty source", id="empty-source"),
        pytest.param("k8s:a-", "must consist", id="bad-key-end"),
        pytest.param("k8s:a:b", "must consist", id="second-colon"),
        pytest.param("a=-b", "must consist", id="bad-value"),
        pytest.param("a=" + "x" * 64, "longer than 63", id="long-value"),
        pytest.param("k" * 60, "longer than 63", id="long-key-with-any-prefix"),
        pytest.param("k8s:Ex.com/a=b", "DNS subdomain", id="uppercase-key-prefix"),
        pytest.param("a in (b, -c)", "must consist", id="bad-set-value"),
    ],
)
def test_selector_errors(selector: str, fragment: str) -> None:
    with pytest.raises(LabelError) as info:
        parse_selector(selector)
    assert fragment in str(info.value)
    assert repr(selector) in str(info.value)


@pytest.mark.parametrize(
    ("selector", "canonical"),
    [
        pytest.param("app", "app", id="exists"),
        pytest.param("! k8s:app", "!k8s:app", id="not-exists"),
        pytest.param("app == web", "app==web", id="double-equals"),
        pytest.param("k8s:app notin (b, a)", "k8s:app notin (a,b)", id="notin-sorted"),
        pytest.param("n > 5, m<-1", "n>5,m<-1", id="gt-lt"),
    ],
)
def test_selector_str_round_trips(selector: str, canonical: str) -> None:
    parsed = parse_selector(selector)
    assert str(parsed) == canonical
    assert parse_selector(str(parsed)) == parsed


def test_requirement_fields() -> None:
    (req,) = parse_selector("k8s:app in (a, b)").requirements
    assert (req.source, req.key, req.op, req.values) == ("k8s", "app", Op.IN, frozenset({"a", "b"}))
    (req,) = parse_selector("app").requirements
    assert (req.source, req.key, req.op) == ("any", "app", Op.EXISTS)


def test_matches_ignores_non_string_labels() -> None:
    assert parse_selector("app=web").matches([None, 5, "k8s:app=web"]) is True
