"""Security identities: reserved ones numbered as Cilium, and a persisted allocator.

A label set maps to one numeric identity. Reserved label sets (``reserved:host`` ...) map to
the reserved numbers. Other sets get a number in [256, 65535]: the first candidate is derived
from a SHA-256 of the set's canonical text, so two nodes allocating the same set almost
always agree; on a collision the allocator probes upward (wrapping). Allocations are
persisted in ``identities.json`` and never forgotten, so a set keeps its number across
restarts; references are counted in memory (endpoints re-acquire theirs on load).
"""

from __future__ import annotations

import hashlib
from enum import IntEnum

from observer.datapath.labels import SOURCE_RESERVED, Label, LabelSet
from observer.datapath.state import IDENTITIES_FILE, StateDir
from observer.errors import DatapathError, LabelError

MIN_ALLOCATED_IDENTITY = 256
MAX_ALLOCATED_IDENTITY = 65535
_SPACE = MAX_ALLOCATED_IDENTITY - MIN_ALLOCATED_IDENTITY + 1


class ReservedIdentity(IntEnum):
    """Cilium's reserved numeric identities (pkg/identity/numericidentity.go)."""

    UNKNOWN = 0
    HOST = 1
    WORLD = 2
    UNMANAGED = 3
    HEALTH = 4
    INIT = 5
    REMOTE_NODE = 6
    KUBE_APISERVER = 7
    INGRESS = 8
    WORLD_IPV4 = 9
    WORLD_IPV6 = 10

    @property
    def label_name(self) -> str:
        """The name Cilium uses in ``reserved:<name>`` and in Hubble's ``(name)``."""
        return self.name.lower().replace("_", "-")

    @property
    def labels(self) -> LabelSet:
        return LabelSet((Label(SOURCE_RESERVED, self.label_name, ""),))


def reserved_identity_by_name(name: str) -> ReservedIdentity | None:
    """``"world"`` -> WORLD; None for a name that is not reserved."""
    for ident in ReservedIdentity:
        if ident.label_name == name:
            return ident
    return None


def reserved_identity_for(labels: LabelSet) -> ReservedIdentity | None:
    """The reserved identity whose label set is exactly ``labels``, or None."""
    if len(labels) != 1:
        return None
    (label,) = labels.labels
    if label.source != SOURCE_RESERVED or label.value:
        return None
    return reserved_identity_by_name(label.key)


def identity_candidate(labels: LabelSet) -> int:
    """The first identity number tried for ``labels`` (pure, stable across hosts)."""
    digest = hashlib.sha256(labels.canonical().encode()).digest()
    return MIN_ALLOCATED_IDENTITY + int.from_bytes(digest[:8], "big") % _SPACE


class IdentityAllocator:
    """Label set <-> numeric identity, persisted in ``identities.json`` of the state dir."""

    __slots__ = ("_by_id", "_by_labels", "_refs", "_state")

    def __init__(self, state: StateDir) -> None:
        self._state = state
        self._by_id: dict[int, LabelSet] = {}
        self._by_labels: dict[LabelSet, int] = {}
        self._refs: dict[int, int] = {}
        self._load()

    def _load(self) -> None:
        doc = self._state.read_json(IDENTITIES_FILE)
        if doc is None:
            return
        entries = doc.get("identities")
        if not isinstance(entries, dict):
            raise self._state.error(IDENTITIES_FILE, "'identities' must be an object")
        for key, texts in entries.items():
            try:
                ident = int(key)
            except ValueError:
                raise self._state.error(
                    IDENTITIES_FILE, f"identity {key!r} is not a number"
                ) from None
            if not MIN_ALLOCATED_IDENTITY <= ident <= MAX_ALLOCATED_IDENTITY:
                raise self._state.error(
                    IDENTITIES_FILE,
                    f"identity {ident} outside [{MIN_ALLOCATED_IDENTITY}, {MAX_ALLOCATED_IDENTITY}]",
                )
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise self._state.error(
                    IDENTITIES_FILE, f"identity {ident}: labels must be a list of strings"
                )
            try:
                labels = LabelSet.parse(texts)
            except LabelError as exc:
                raise self._state.error(IDENTITIES_FILE, f"identity {ident}: {exc}") from None
            if not labels or reserved_identity_for(labels) is not None:
                raise self._state.error(
                    IDENTITIES_FILE, f"identity {ident}: empty or reserved label set {labels}"
                )
            if labels in self._by_labels:
                raise self._state.error(
                    IDENTITIES_FILE,
                    f"identities {self._by_labels[labels]} and {ident} have the same labels",
                )
            self._by_id[ident] = labels
            self._by_labels[labels] = ident

    def _save(self) -> None:
        self._state.write_json(
            IDENTITIES_FILE,
            {
                "identities": {
                    str(ident): labels.to_strings() for ident, labels in sorted(self._by_id.items())
                }
            },
        )

    def lookup(self, labels: LabelSet) -> int | None:
        """The identity of ``labels`` if one was allocated (or is reserved), else None."""
        reserved = reserved_identity_for(labels)
        if reserved is not None:
            return int(reserved)
        return self._by_labels.get(labels)

    def get(self, identity: int) -> LabelSet | None:
        """The labels of ``identity`` (reserved or allocated), None if unknown."""
        try:
            return ReservedIdentity(identity).labels
        except ValueError:
            return self._by_id.get(identity)

    def allocate(self, labels: LabelSet) -> int:
        """Take a reference on the identity of ``labels``, allocating (and persisting) it if new."""
        reserved = reserved_identity_for(labels)
        if reserved is not None:
            return int(reserved)
        if not labels:
            raise LabelError("cannot allocate an identity for an empty label set")
        if any(label.source == SOURCE_RESERVED for label in labels):
            raise LabelError(f"label set {labels} mixes reserved and other labels")
        ident = self._by_labels.get(labels)
        if ident is None:
            ident = self._free_number(labels)
            self._by_id[ident] = labels
            self._by_labels[labels] = ident
            try:
                self._save()
            except BaseException:
                del self._by_id[ident]
                del self._by_labels[labels]
                raise
        self._refs[ident] = self._refs.get(ident, 0) + 1
        return ident

    def adopt(self, identity: int, labels: LabelSet) -> None:
        """Take a reference on ``identity`` as an endpoint record says it has ``labels``.

        Records the pair if ``identities.json`` lost it; StateError when the record
        contradicts the allocator (the labels have another number, or the number belongs to
        other labels).
        """
        reserved = reserved_identity_for(labels)
        if reserved is not None or identity < MIN_ALLOCATED_IDENTITY:
            if reserved is None or int(reserved) != identity:
                raise self._state.error(
                    IDENTITIES_FILE, f"identity {identity} does not match labels {labels}"
                )
            return
        known = self._by_labels.get(labels)
        if known is not None and known != identity:
            raise self._state.error(
                IDENTITIES_FILE, f"labels {labels} have identity {known}, a record says {identity}"
            )
        owner = self._by_id.get(identity)
        if owner is not None and owner != labels:
            raise self._state.error(
                IDENTITIES_FILE, f"identity {identity} belongs to {owner}, a record says {labels}"
            )
        if known is None:
            if identity > MAX_ALLOCATED_IDENTITY:
                raise self._state.error(
                    IDENTITIES_FILE, f"identity {identity} outside the allocation range"
                )
            self._by_id[identity] = labels
            self._by_labels[labels] = identity
            self._save()
        self._refs[identity] = self._refs.get(identity, 0) + 1

    def _free_number(self, labels: LabelSet) -> int:
        start = identity_candidate(labels) - MIN_ALLOCATED_IDENTITY
        for step in range(_SPACE):
            ident = MIN_ALLOCATED_IDENTITY + (start + step) % _SPACE
            if ident not in self._by_id:
                return ident
        raise DatapathError(
            f"identity space [{MIN_ALLOCATED_IDENTITY}, {MAX_ALLOCATED_IDENTITY}] is exhausted"
        )

    def release(self, identity: int) -> int:
        """Drop one reference; returns the references left. The number stays allocated."""
        if identity not in self._by_id:
            return 0
        left = max(self._refs.get(identity, 0) - 1, 0)
        if left:
            self._refs[identity] = left
        else:
            self._refs.pop(identity, None)
        return left

    def refcount(self, identity: int) -> int:
        return self._refs.get(identity, 0)

    def identities(self) -> dict[int, LabelSet]:
        """Every allocated (non-reserved) identity."""
        return dict(self._by_id)


def parse_identity(text: str) -> int:
    """A number or a reserved name (``world``, ``host`` ...) -> numeric identity."""
    reserved = reserved_identity_by_name(text)
    if reserved is not None:
        return int(reserved)
    try:
        value = int(text, 10)
    except ValueError:
        raise LabelError(f"invalid identity {text!r}: not a number or reserved name") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise LabelError(f"invalid identity {text!r}: out of range")
    return value


__all__ = [
    "MAX_ALLOCATED_IDENTITY",
    "MIN_ALLOCATED_IDENTITY",
    "IdentityAllocator",
    "ReservedIdentity",
    "identity_candidate",
    "parse_identity",
    "reserved_identity_by_name",
    "reserved_identity_for",
]
