"""Cilium's label model (pure).

A label is ``source:key=value``; ``str()`` drops ``=value`` when the value is empty
(``reserved:host``), as Cilium prints them. Keys and values follow Kubernetes label syntax:
a key is an optional DNS-subdomain prefix and ``/`` followed by a name of at most 63
characters from ``[A-Za-z0-9._-]`` that starts and ends alphanumeric; a value is empty or
follows the same rule as the name.

Endpoints carry their user labels plus ``k8s:io.kubernetes.pod.namespace=<ns>`` and
``k8s:io.cilium.k8s.policy.cluster=<cluster>``, the labels Cilium derives for every pod.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from observer.errors import LabelError

SOURCE_K8S = "k8s"
SOURCE_RESERVED = "reserved"
SOURCE_ANY = "any"
SOURCE_CONTAINER = "container"
SOURCE_UNSPEC = "unspec"

LABEL_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CLUSTER = "io.cilium.k8s.policy.cluster"
DERIVED_KEYS = frozenset({LABEL_NAMESPACE, LABEL_CLUSTER})

_NAME_MAX = 63
_PREFIX_MAX = 253
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_DNS_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_DNS_SUBDOMAIN_RE = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
)
_SOURCE_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


@dataclass(frozen=True, slots=True, order=True)
class Label:
    """One label. Ordered by (source, key, value)."""

    source: str
    key: str
    value: str = ""

    def __str__(self) -> str:
        if self.value:
            return f"{self.source}:{self.key}={self.value}"
        return f"{self.source}:{self.key}"


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label key, or None when it is."""
    if not key:
        return "empty key"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "empty prefix before '/'"
        if len(prefix) > _PREFIX_MAX:
            return f"key prefix longer than {_PREFIX_MAX} characters"
        if not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
            return f"key prefix {prefix!r} is not a DNS subdomain (lower-case a-z, 0-9, '-', '.')"
    if not name:
        return "empty key name"
    if len(name) > _NAME_MAX:
        return f"key name longer than {_NAME_MAX} characters"
    if not _NAME_RE.fullmatch(name):
        return (
            f"key name {name!r} must consist of A-Z, a-z, 0-9, '-', '_', '.' "
            "and start and end with an alphanumeric character"
        )
    return None


def value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid Kubernetes label value, or None when it is."""
    if not value:
        return None
    if len(value) > _NAME_MAX:
        return f"value longer than {_NAME_MAX} characters"
    if not _NAME_RE.fullmatch(value):
        return (
            f"value {value!r} must consist of A-Z, a-z, 0-9, '-', '_', '.' "
            "and start and end with an alphanumeric character"
        )
    return None


def is_dns_label(text: str) -> bool:
    """RFC 1123 label: what Kubernetes accepts as a namespace name."""
    return len(text) <= 63 and _DNS_LABEL_RE.fullmatch(text) is not None


def is_dns_subdomain(text: str) -> bool:
    """RFC 1123 subdomain: what Kubernetes accepts as a pod name."""
    return len(text) <= 253 and _DNS_SUBDOMAIN_RE.fullmatch(text) is not None


def parse_label(text: str, *, default_source: str = SOURCE_K8S) -> Label:
    """Parse ``[source:]key[=value]`` into a Label; any source, including ``reserved``.

    Raises LabelError naming the label text and the problem.
    """
    if not isinstance(text, str):
        raise LabelError(f"label {text!r}: not a string")
    key_part, eq, value = text.partition("=")
    source = default_source
    # The source is what precedes the first ':' of the key part (keys never contain ':').
    head, colon, rest = key_part.partition(":")
    if colon:
        source, key = head, rest
        if not _SOURCE_RE.fullmatch(source):
            raise LabelError(
                f"invalid label {text!r}: source {source!r} must be lower-case a-z, 0-9 and '-'"
            )
    else:
        key = key_part
    if eq and not key:
        raise LabelError(f"invalid label {text!r}: empty key before '='")
    problem = key_problem(key) or value_problem(value)
    if problem is not None:
        raise LabelError(f"invalid label {text!r}: {problem}")
    return Label(source, key, value)


def parse_user_label(text: str) -> Label:
    """Parse a label a user puts on an endpoint: ``key``, ``key=value`` or ``source:key=value``.

    The source defaults to ``k8s``. Reserved and selector-only sources (``reserved``, ``any``)
    and the labels the agent derives itself (namespace, cluster) are refused.
    """
    label = parse_label(text)
    if label.source in (SOURCE_RESERVED, SOURCE_ANY):
        raise LabelError(
            f"invalid label {text!r}: source {label.source!r} cannot be set on an endpoint"
        )
    if label.key in DERIVED_KEYS:
        raise LabelError(
            f"invalid label {text!r}: {label.key} is set by the agent from the endpoint's "
            "namespace and cluster"
        )
    return label


@dataclass(frozen=True, slots=True, repr=False)
class LabelSet:
    """An immutable, sorted, de-duplicated set of labels; hashable.

    At most one label per (source, key): building a set from two labels with the same source
    and key but different values raises LabelError.
    """

    labels: tuple[Label, ...] = ()

    def __post_init__(self) -> None:
        by_key: dict[tuple[str, str], Label] = {}
        for label in self.labels:
            if not isinstance(label, Label):
                raise LabelError(f"label {label!r}: not a Label")
            seen = by_key.get((label.source, label.key))
            if seen is not None and seen != label:
                raise LabelError(f"conflicting labels {seen} and {label}")
            by_key[(label.source, label.key)] = label
        object.__setattr__(self, "labels", tuple(sorted(by_key.values())))

    @classmethod
    def of(cls, labels: Iterable[Label]) -> LabelSet:
        return cls(tuple(labels))

    @classmethod
    def parse(cls, texts: Iterable[str]) -> LabelSet:
        """From label strings in any source (``k8s:a=b``, ``reserved:host``, ``a=b``)."""
        return cls(tuple(parse_label(t) for t in texts))

    def __iter__(self) -> Iterator[Label]:
        return iter(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            try:
                item = parse_label(item)
            except LabelError:
                return False
        return item in self.labels

    def __str__(self) -> str:
        return ",".join(str(label) for label in self.labels)

    def __repr__(self) -> str:
        return f"LabelSet({self.to_strings()!r})"

    def get(self, key: str, source: str | None = None) -> str | None:
        """The value of ``key`` (from ``source``, or any source when None); None if absent."""
        for label in self.labels:
            if label.key == key and (source is None or label.source == source):
                return label.value
        return None

    def to_strings(self) -> list[str]:
        """Sorted ``source:key=value`` strings, the form Hubble puts in ``Endpoint.labels``."""
        return [str(label) for label in self.labels]

    def canonical(self) -> str:
        """``k8s:a=b;k8s:c=d;``: the stable text the identity hash is computed over."""
        return "".join(f"{label};" for label in self.labels)

    def merged(self, other: Iterable[Label]) -> LabelSet:
        """This set with ``other``'s labels added, replacing same (source, key)."""
        by_key = {(label.source, label.key): label for label in self.labels}
        for label in other:
            by_key[(label.source, label.key)] = label
        return LabelSet(tuple(by_key.values()))

    def without_keys(self, keys: Iterable[str]) -> LabelSet:
        drop = set(keys)
        return LabelSet(tuple(label for label in self.labels if label.key not in drop))

    def is_reserved(self) -> bool:
        return bool(self.labels) and all(label.source == SOURCE_RESERVED for label in self.labels)


def validate_cluster_name(cluster: str) -> None:
    """Cilium cluster names: lower-case alphanumerics and '-', at most 32 characters."""
    if not cluster or len(cluster) > 32 or not _DNS_LABEL_RE.fullmatch(cluster):
        raise LabelError(
            f"invalid cluster name {cluster!r}: lower-case a-z, 0-9 and '-', "
            "starting and ending alphanumeric, at most 32 characters"
        )


def endpoint_labels(namespace: str, user_labels: Iterable[str], cluster: str) -> LabelSet:
    """The full label set of an endpoint: parsed user labels plus the derived namespace and
    cluster labels, as Cilium writes them.

    Raises LabelError for a malformed user label, namespace or cluster name.
    """
    if not is_dns_label(namespace):
        raise LabelError(
            f"invalid namespace {namespace!r}: lower-case a-z, 0-9 and '-', "
            "starting and ending alphanumeric, at most 63 characters"
        )
    validate_cluster_name(cluster)
    parsed = [parse_user_label(text) for text in user_labels]
    derived = [
        Label(SOURCE_K8S, LABEL_NAMESPACE, namespace),
        Label(SOURCE_K8S, LABEL_CLUSTER, cluster),
    ]
    return LabelSet(tuple(parsed + derived))


def user_labels_of(labels: LabelSet) -> list[str]:
    """The labels of an endpoint without the derived ones, as strings."""
    return labels.without_keys(DERIVED_KEYS).to_strings()
