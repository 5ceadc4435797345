"""Label selectors over Cilium label sets (pure).

A selector is a conjunction of requirements, each on one ``(source, key)``:

* ``matchLabels: {key: value}`` is the requirement ``key In (value)``;
* ``matchExpressions`` take the Kubernetes operators ``In``, ``NotIn``, ``Exists`` and
  ``DoesNotExist`` with Kubernetes semantics (``NotIn`` also matches when the key is absent).

Selector keys are written ``key`` or ``any:key`` (a label of any source matches), or
``source:key`` (only labels of that source match: ``k8s:app``, ``reserved:host``). An empty
selector matches every label set.

Labels themselves are :class:`observer.datapath.labels.Label` (``source:key=value``). Label
sets are indexed once by key (:class:`LabelIndex`) so matching a selector costs one dict
lookup per requirement.

The namespace rules of Cilium's Kubernetes translation live here too:
:func:`scope_peer_selector` (a namespaced policy's ``fromEndpoints``/``toEndpoints`` select
only its namespace unless they name the namespace) and the Kubernetes ``namespaceSelector``
mapping (:func:`namespace_requirement_key`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from observer.datapath.labels import (
    SOURCE_ANY,
    SOURCE_K8S,
    SOURCE_RESERVED,
    Label,
    LabelSet,
    key_problem,
    value_problem,
)
from observer.errors import LabelError

#: The label Cilium puts on every pod: ``k8s:io.kubernetes.pod.namespace=<namespace>``.
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
#: Namespace labels as Cilium copies them onto pods: ``k8s:io.cilium.k8s.namespace.labels.<key>``.
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
#: The label Kubernetes (>= 1.21) puts on every namespace: its name.
K8S_NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class SelectorError(LabelError):
    """A selector document is malformed. ``parts`` is the field path relative to the
    selector (``("matchExpressions", 0, "operator")``), empty for the selector itself."""

    def __init__(self, parts: tuple[str | int, ...], message: str) -> None:
        self.parts = parts
        self.path = "".join(
            f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(parts)
        )
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


@dataclass(frozen=True, slots=True)
class LabelIndex:
    """A label set indexed for matching: values by key (any source) and by (source, key)."""

    labels: LabelSet
    by_key: Mapping[str, tuple[str, ...]] = field(init=False, compare=False, hash=False, repr=False)
    by_source_key: Mapping[tuple[str, str], tuple[str, ...]] = field(
        init=False, compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        by_key: dict[str, list[str]] = {}
        by_source_key: dict[tuple[str, str], list[str]] = {}
        for label in self.labels:
            by_key.setdefault(label.key, []).append(label.value)
            by_source_key.setdefault((label.source, label.key), []).append(label.value)
        object.__setattr__(self, "by_key", {k: tuple(v) for k, v in by_key.items()})
        object.__setattr__(self, "by_source_key", {k: tuple(v) for k, v in by_source_key.items()})

    def values(self, source: str, key: str) -> tuple[str, ...]:
        """Values of the labels with ``key`` from ``source`` (any source for ``any``)."""
        if source == SOURCE_ANY:
            return self.by_key.get(key, ())
        return self.by_source_key.get((source, key), ())


@dataclass(frozen=True, slots=True, order=True)
class Requirement:
    """One requirement on labels with ``key`` from ``source`` (``any`` = every source)."""

    source: str
    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))
        if self.operator in (Operator.IN, Operator.NOT_IN) and not self.values:
            raise LabelError(f"{self.key}: operator {self.operator} needs at least one value")
        if self.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and self.values:
            raise LabelError(f"{self.key}: operator {self.operator} takes no values")

    def matches(self, index: LabelIndex) -> bool:
        found = index.values(self.source, self.key)
        if self.operator is Operator.IN:
            return any(v in self.values for v in found)
        if self.operator is Operator.NOT_IN:
            return not any(v in self.values for v in found)
        if self.operator is Operator.EXISTS:
            return bool(found)
        return not found

    @property
    def selector_key(self) -> str:
        """The key as written in a selector: ``source:key`` (``any:key`` for any source)."""
        return f"{self.source}:{self.key}"

    def __str__(self) -> str:
        key = self.selector_key
        if self.operator is Operator.IN and len(self.values) == 1:
            return f"{key}={self.values[0]}"
        if self.operator is Operator.EXISTS:
            return key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{key}"
        word = "in" if self.operator is Operator.IN else "notin"
        return f"{key} {word} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "requirements", tuple(sorted(set(self.requirements))))

    def matches(self, labels: LabelIndex | LabelSet) -> bool:
        index = labels if isinstance(labels, LabelIndex) else LabelIndex(labels)
        return all(req.matches(index) for req in self.requirements)

    @property
    def is_empty(self) -> bool:
        return not self.requirements

    def has_key(self, key: str, sources: Iterable[str] = (SOURCE_K8S, SOURCE_ANY)) -> bool:
        wanted = set(sources)
        return any(r.key == key and r.source in wanted for r in self.requirements)

    def has_key_prefix(
        self, prefix: str, sources: Iterable[str] = (SOURCE_K8S, SOURCE_ANY)
    ) -> bool:
        wanted = set(sources)
        return any(r.key.startswith(prefix) and r.source in wanted for r in self.requirements)

    def has_source(self, source: str) -> bool:
        return any(r.source == source for r in self.requirements)

    def with_requirements(self, *extra: Requirement) -> LabelSelector:
        return LabelSelector(self.requirements + extra)

    def without(self, drop: Requirement) -> LabelSelector:
        return LabelSelector(tuple(r for r in self.requirements if r != drop))

    def to_dict(self) -> dict[str, object]:
        """The selector as a Kubernetes LabelSelector document (``source:key`` keys)."""
        match_labels: dict[str, str] = {}
        expressions: list[dict[str, object]] = []
        for req in self.requirements:
            if req.operator is Operator.IN and len(req.values) == 1:
                match_labels[req.selector_key] = req.values[0]
                continue
            expr: dict[str, object] = {"key": req.selector_key, "operator": str(req.operator)}
            if req.values:
                expr["values"] = list(req.values)
            expressions.append(expr)
        out: dict[str, object] = {}
        if match_labels:
            out["matchLabels"] = match_labels
        if expressions:
            out["matchExpressions"] = expressions
        return out

    def __str__(self) -> str:
        if not self.requirements:
            return "{} (everything)"
        return ", ".join(str(r) for r in self.requirements)


def parse_selector_key(text: str, *, default_source: str = SOURCE_ANY) -> tuple[str, str]:
    """``"app"`` -> ``("any", "app")``; ``"k8s:app"`` -> ``("k8s", "app")``.

    Raises LabelError for an empty or malformed key.
    """
    if not isinstance(text, str) or not text:
        raise LabelError(f"invalid selector key {text!r}: empty")
    head, colon, rest = text.partition(":")
    source, key = (head, rest) if colon else (default_source, text)
    if not source or any(c.isspace() for c in source):
        raise LabelError(f"invalid selector key {text!r}: bad source {source!r}")
    if source == SOURCE_RESERVED:
        # reserved:host, reserved:world ... are not Kubernetes keys; check only the shape.
        if not key or any(c.isspace() or c in "=," for c in key):
            raise LabelError(f"invalid selector key {text!r}")
        return source, key
    problem = key_problem(key)
    if problem is not None:
        raise LabelError(f"invalid selector key {text!r}: {problem}")
    return source, key


def _check_value(value: object, path: tuple[str | int, ...]) -> str:
    if not isinstance(value, str):
        raise SelectorError(path, f"value {value!r} must be a string")
    problem = value_problem(value)
    if problem is not None:
        raise SelectorError(path, problem)
    return value


def parse_selector(
    raw: object,
    *,
    default_source: str = SOURCE_ANY,
    key_map: Mapping[str, tuple[str, str]] | None = None,
) -> LabelSelector:
    """Parse a Kubernetes LabelSelector document into a :class:`LabelSelector`.

    ``default_source`` is the source of keys written without one (``any`` for Cilium
    selectors, ``k8s`` for Kubernetes NetworkPolicy). ``key_map`` rewrites keys after
    parsing (used for Kubernetes namespace selectors). ``None`` or ``{}`` is the empty
    selector. Raises :class:`SelectorError` naming the offending sub-field.
    """
    if raw is None:
        return LabelSelector()
    if not isinstance(raw, Mapping):
        raise SelectorError((), "must be a mapping with matchLabels and/or matchExpressions")
    unknown = sorted(str(k) for k in raw if k not in ("matchLabels", "matchExpressions"))
    if unknown:
        raise SelectorError((unknown[0],), "unknown field")

    def key_of(text: object, path: tuple[str | int, ...]) -> tuple[str, str]:
        if not isinstance(text, str):
            raise SelectorError(path, f"key {text!r} must be a string")
        try:
            source, key = parse_selector_key(text, default_source=default_source)
        except LabelError as exc:
            raise SelectorError(path, str(exc)) from None
        if key_map is not None:
            return key_map_lookup(key_map, source, key)
        return source, key

    reqs: list[Requirement] = []
    labels = raw.get("matchLabels")
    if labels is not None:
        if not isinstance(labels, Mapping):
            raise SelectorError(("matchLabels",), "must be a mapping of key to value")
        for k, v in labels.items():
            path: tuple[str | int, ...] = ("matchLabels", str(k))
            source, key = key_of(k, path)
            value = "" if v is None and source == SOURCE_RESERVED else _check_value(v, path)
            reqs.append(Requirement(source, key, Operator.IN, (value,)))
    exprs = raw.get("matchExpressions")
    if exprs is not None:
        if not isinstance(exprs, list):
            raise SelectorError(("matchExpressions",), "must be a list")
        for i, expr in enumerate(exprs):
            base: tuple[str | int, ...] = ("matchExpressions", i)
            if not isinstance(expr, Mapping):
                raise SelectorError(base, "must be a mapping with key, operator and values")
            extra = sorted(str(k) for k in expr if k not in ("key", "operator", "values"))
            if extra:
                raise SelectorError((*base, extra[0]), "unknown field")
            if "key" not in expr:
                raise SelectorError((*base, "key"), "required")
            source, key = key_of(expr["key"], (*base, "key"))
            op_text = expr.get("operator")
            try:
                op = Operator(str(op_text))
            except ValueError:
                raise SelectorError(
                    (*base, "operator"),
                    f"unknown operator {op_text!r} (want In, NotIn, Exists or DoesNotExist)",
                ) from None
            values_raw = expr.get("values")
            if values_raw is None:
                values_raw = []
            if not isinstance(values_raw, list):
                raise SelectorError((*base, "values"), "must be a list of strings")
            values = tuple(_check_value(v, (*base, "values", j)) for j, v in enumerate(values_raw))
            if op in (Operator.IN, Operator.NOT_IN) and not values:
                raise SelectorError((*base, "values"), f"operator {op} needs at least one value")
            if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
                raise SelectorError((*base, "values"), f"operator {op} takes no values")
            reqs.append(Requirement(source, key, op, values))
    return LabelSelector(tuple(reqs))


def key_map_lookup(
    key_map: Mapping[str, tuple[str, str]], source: str, key: str
) -> tuple[str, str]:
    """Apply a key rewrite table; ``"*"`` maps every other key by prefixing it."""
    if key in key_map:
        return key_map[key]
    star = key_map.get("*")
    if star is not None:
        return star[0], star[1] + key
    return source, key


#: Kubernetes ``namespaceSelector`` keys as Cilium sees them on pods: the namespace name
#: label becomes the pod namespace label, every other key a copied namespace label.
NAMESPACE_SELECTOR_KEYS: Mapping[str, tuple[str, str]] = {
    K8S_NAMESPACE_NAME_LABEL: (SOURCE_K8S, POD_NAMESPACE_LABEL),
    "*": (SOURCE_K8S, NAMESPACE_LABELS_PREFIX),
}


def namespace_requirement(namespace: str) -> Requirement:
    """``k8s:io.kubernetes.pod.namespace=<namespace>``."""
    return Requirement(SOURCE_K8S, POD_NAMESPACE_LABEL, Operator.IN, (namespace,))


def any_namespace_requirement() -> Requirement:
    """``k8s:io.kubernetes.pod.namespace`` exists: any pod, never a reserved/CIDR identity."""
    return Requirement(SOURCE_K8S, POD_NAMESPACE_LABEL, Operator.EXISTS)


def names_namespace(selector: LabelSelector) -> bool:
    """Whether the selector says which namespace(s) it means (by name or namespace labels)."""
    return selector.has_key(POD_NAMESPACE_LABEL) or selector.has_key_prefix(NAMESPACE_LABELS_PREFIX)


def scope_peer_selector(selector: LabelSelector, namespace: str) -> LabelSelector:
    """Cilium's rule for ``fromEndpoints``/``toEndpoints`` of a policy in ``namespace``.

    Selectors on reserved labels are left alone. A selector that names the namespace
    (``io.kubernetes.pod.namespace`` or a namespace label) is left alone in a namespaced
    policy. Otherwise a namespaced policy's selector is restricted to its namespace, and a
    clusterwide policy's (``namespace == ""``) to pods of any namespace.
    """
    if selector.has_source(SOURCE_RESERVED):
        return selector
    if selector.has_key(POD_NAMESPACE_LABEL):
        return selector
    if not namespace:
        return selector.with_requirements(any_namespace_requirement())
    if selector.has_key_prefix(NAMESPACE_LABELS_PREFIX):
        return selector
    return selector.with_requirements(namespace_requirement(namespace))


def subject_selector(selector: LabelSelector) -> LabelSelector:
    """An ``endpointSelector`` of a namespaced policy without a user ``matchLabels`` on the
    namespace: the policy's own namespace always applies (Cilium overwrites that match)."""
    return LabelSelector(
        tuple(
            r
            for r in selector.requirements
            if not (
                r.key == POD_NAMESPACE_LABEL
                and r.source in (SOURCE_K8S, SOURCE_ANY)
                and r.operator is Operator.IN
                and len(r.values) == 1
            )
        )
    )


def label_index(labels: LabelSet | Iterable[Label]) -> LabelIndex:
    return LabelIndex(labels if isinstance(labels, LabelSet) else LabelSet.of(labels))
