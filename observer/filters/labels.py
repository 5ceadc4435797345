"""Kubernetes label selectors over Cilium labels, as Hubble's label filters match them.

Syntax (Kubernetes ``labels.Parse``): requirements separated by commas, all of which must hold:

    key            the label exists            !key          it does not
    key=v, key==v  exists with value v         key!=v        absent, or value is not v
    key in (a,b)   exists with value a or b    key notin (a,b)  absent, or value not a/b
    key>5, key<5   exists with an integer value greater / less than 5

Keys may carry a Cilium source prefix (``k8s:app``, ``reserved:world``); then only a label
from that source matches. A key without one matches that key from any source (Hubble rewrites
it to ``any:key``). Keys and values are validated as Kubernetes label keys and values, on the
``source.key`` form Hubble hands to the Kubernetes parser (so ``app`` is checked as
``any.app``). The empty selector matches everything.

Labels on flows are Cilium label strings ``source:key=value`` (``k8s:app=web``,
``reserved:world``). When several labels have the key a requirement names (possible only with
the any source), the first one decides, as in Cilium's ``LabelArray.Get``.

``parse_selector`` raises ``LabelError``; the filter compiler turns that into ``FilterError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from observer.errors import LabelError

SOURCE_ANY: Final = "any"
SOURCE_UNSPEC: Final = "unspec"
SOURCE_RESERVED: Final = "reserved"

ParsedLabel = tuple[str, str, str]
"""(source, key, value) of one Cilium label string."""

_NAME_MAX: Final = 63
_PREFIX_MAX: Final = 253
_NAME_RE: Final = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN_RE: Final = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_WHITESPACE: Final = frozenset(" \t\r\n")
_SPECIAL: Final = frozenset("=!(),<>")


class Op(StrEnum):
    """A requirement's operator."""

    EXISTS = "exists"
    NOT_EXISTS = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    GREATER = ">"
    LESS = "<"


def split_label(text: str) -> ParsedLabel:
    """Split a Cilium label string into (source, key, value), as Cilium's ParseLabel does.

    ``k8s:app=web`` -> (k8s, app, web); ``reserved:world`` -> (reserved, world, "");
    ``app=a:b`` -> (unspec, app, a:b) (a ':' after the '=' belongs to the value);
    ``$host`` -> (reserved, host, "").
    """
    if text.startswith("$"):
        source, rest = SOURCE_RESERVED, text[1:]
    else:
        colon = text.find(":")
        eq = text.find("=")
        if colon >= 0 and (eq < 0 or colon < eq):
            source, rest = text[:colon], text[colon + 1 :]
        else:
            source, rest = SOURCE_UNSPEC, text
    key, eq_sign, value = rest.partition("=")
    if eq_sign and not key and source == SOURCE_RESERVED:
        return source, value, ""
    return source, key, value


def parse_labels(labels: Iterable[object]) -> list[ParsedLabel]:
    """Split every string of ``labels``; non-strings are skipped."""
    return [split_label(label) for label in labels if isinstance(label, str)]


_EXISTS, _NOT_EXISTS, _IN, _NOT_IN, _GREATER, _LESS = range(6)
_OP_CODES: Final[Mapping[Op, int]] = MappingProxyType(
    {
        Op.EXISTS: _EXISTS,
        Op.NOT_EXISTS: _NOT_EXISTS,
        Op.EQUALS: _IN,
        Op.DOUBLE_EQUALS: _IN,
        Op.IN: _IN,
        Op.NOT_EQUALS: _NOT_IN,
        Op.NOT_IN: _NOT_IN,
        Op.GREATER: _GREATER,
        Op.LESS: _LESS,
    }
)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of a selector. ``source`` is ``any`` when the key had no prefix."""

    source: str
    key: str
    op: Op
    values: frozenset[str] = frozenset()
    number: int = 0  # the operand of > and <
    _code: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_code", _OP_CODES[self.op])

    def matches_parsed(self, labels: Sequence[ParsedLabel]) -> bool:
        key = self.key
        value: str | None = None
        if self.source == SOURCE_ANY:
            for _src, k, v in labels:
                if k == key:
                    value = v
                    break
        else:
            source = self.source
            for src, k, v in labels:
                if k == key and src == source:
                    value = v
                    break
        code = self._code
        if code == _IN:
            return value is not None and value in self.values
        if code == _NOT_IN:
            return value is None or value not in self.values
        if code == _EXISTS:
            return value is not None
        if code == _NOT_EXISTS:
            return value is None
        # > and <: the label's value must be an integer
        if value is None or _INT_RE.fullmatch(value) is None:
            return False
        have = int(value)
        if not _INT64_MIN <= have <= _INT64_MAX:
            return False
        return have > self.number if code == _GREATER else have < self.number

    def __str__(self) -> str:
        key = self.key if self.source == SOURCE_ANY else f"{self.source}:{self.key}"
        if self.op is Op.EXISTS:
            return key
        if self.op is Op.NOT_EXISTS:
            return f"!{key}"
        if self.op in (Op.IN, Op.NOT_IN):
            return f"{key} {self.op.value} ({','.join(sorted(self.values))})"
        (value,) = self.values
        return f"{key}{self.op.value}{value}"


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed label selector: every requirement must hold. No requirement = everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Iterable[object]) -> bool:
        """Whether the Cilium label strings ``labels`` satisfy every requirement."""
        if not self.requirements:
            return True
        return self.matches_parsed(parse_labels(labels))

    def matches_parsed(self, labels: Sequence[ParsedLabel]) -> bool:
        """As ``matches``, over labels already split with ``split_label``."""
        for req in self.requirements:  # noqa: SIM110 (hot path: faster than all())
            if not req.matches_parsed(labels):
                return False
        return True

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(req) for req in self.requirements)


# --- parsing ---------------------------------------------------------------------------

_Token = tuple[str, str]  # (kind, text); kind is "id", "eos" or the operator text


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
        elif ch in _SPECIAL:
            two = text[i : i + 2]
            if two in ("==", "!="):
                tokens.append((two, two))
                i += 2
            else:
                tokens.append((ch, ch))
                i += 1
        else:
            j = i
            while j < n and text[j] not in _WHITESPACE and text[j] not in _SPECIAL:
                j += 1
            word = text[i:j]
            kind = word if word in ("in", "notin") else "id"
            tokens.append((kind, word))
            i = j
    tokens.append(("eos", ""))
    return tokens


def _show(token: _Token) -> str:
    return "end of selector" if token[0] == "eos" else repr(token[1])


def _key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes qualified name (label key), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "empty prefix before '/'"
        if len(prefix) > _PREFIX_MAX or not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
            return f"key prefix {prefix!r} is not a DNS subdomain"
        if "/" in prefix:
            return "more than one '/' in key"
    if not name:
        return "empty key name"
    if len(name) > _NAME_MAX:
        return f"key name {name!r} longer than {_NAME_MAX} characters"
    if not _NAME_RE.fullmatch(name):
        return (
            f"key name {name!r} must consist of alphanumerics, '-', '_' or '.' "
            "and start and end with an alphanumeric"
        )
    return None


def _value_problem(value: str) -> str | None:
    if not value:
        return None
    if len(value) > _NAME_MAX:
        return f"value {value!r} longer than {_NAME_MAX} characters"
    if not _NAME_RE.fullmatch(value):
        return (
            f"value {value!r} must consist of alphanumerics, '-', '_' or '.' "
            "and start and end with an alphanumeric"
        )
    return None


class _Parser:
    __slots__ = ("pos", "text", "tokens")

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.pos = 0

    def error(self, reason: str) -> LabelError:
        return LabelError(f"invalid label selector {self.text!r}: {reason}")

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        if token[0] != "eos":
            self.pos += 1
        return token

    def parse(self) -> Selector:
        if self.peek()[0] == "eos":
            return Selector(())
        requirements: list[Requirement] = []
        while True:
            requirements.append(self.requirement())
            token = self.take()
            if token[0] == "eos":
                return Selector(tuple(requirements))
            if token[0] != ",":
                raise self.error(f"found {_show(token)}, expected ','")

    def requirement(self) -> Requirement:
        token = self.take()
        negated = token[0] == "!"
        if negated:
            token = self.take()
        if token[0] != "id":
            raise self.error(f"found {_show(token)}, expected a label key")
        source, key = self.key(token[1])
        if negated:
            if self.peek()[0] not in (",", "eos"):
                raise self.error(f"found {_show(self.peek())} after '!{token[1]}'")
            return Requirement(source, key, Op.NOT_EXISTS)
        if self.peek()[0] in (",", "eos"):
            return Requirement(source, key, Op.EXISTS)
        op_token = self.take()
        kind = op_token[0]
        if kind in ("in", "notin"):
            values = self.value_set()
            for value in values:
                self.check_value(value)
            return Requirement(source, key, Op(kind), frozenset(values))
        if kind in ("=", "==", "!="):
            value = self.single_value()
            self.check_value(value)
            return Requirement(source, key, Op(kind), frozenset((value,)))
        if kind in (">", "<"):
            value = self.single_value()
            if _INT_RE.fullmatch(value) is None or not _INT64_MIN <= int(value) <= _INT64_MAX:
                raise self.error(f"for '{kind}' the value must be an integer, got {value!r}")
            return Requirement(source, key, Op(kind), frozenset((value,)), int(value))
        raise self.error(
            f"found {_show(op_token)}, expected one of '=', '==', '!=', 'in', 'notin', '>', '<'"
        )

    def key(self, word: str) -> tuple[str, str]:
        source, colon, key = word.partition(":")
        if not colon:
            source, key = SOURCE_ANY, word
        if not source:
            raise self.error(f"key {word!r}: empty source before ':'")
        if not key:
            raise self.error(f"key {word!r}: empty key name")
        # Hubble hands ``source.key`` to the Kubernetes parser, which validates it as a key.
        problem = _key_problem(f"{source}.{key}")
        if problem is not None:
            raise self.error(f"key {word!r} (checked as {source}.{key}): {problem}")
        return source, key

    def check_value(self, value: str) -> None:
        problem = _value_problem(value)
        if problem is not None:
            raise self.error(problem)

    def single_value(self) -> str:
        token = self.peek()
        if token[0] in (",", "eos"):
            return ""
        if token[0] in ("id", "in", "notin"):
            self.take()
            return token[1]
        raise self.error(f"found {_show(token)}, expected a value")

    def value_set(self) -> set[str]:
        token = self.take()
        if token[0] != "(":
            raise self.error(f"found {_show(token)}, expected '('")
        values: set[str] = set()
        if self.peek()[0] == ")":
            self.take()
            return {""}
        expect_value = True
        while True:
            token = self.take()
            kind = token[0]
            if kind in ("id", "in", "notin") and expect_value:
                values.add(token[1])
                expect_value = False
            elif kind == ",":
                if expect_value:
                    values.add("")  # "(,", ",," and ",)" stand for the empty value
                expect_value = True
            elif kind == ")":
                if expect_value:
                    values.add("")
                return values
            else:
                raise self.error(f"found {_show(token)}, expected ',', ')' or a value")


def parse_selector(text: str) -> Selector:
    """Parse a label selector; raises LabelError naming the selector and the problem."""
    if not isinstance(text, str):
        raise LabelError(f"invalid label selector {text!r}: not a string")
    return _Parser(text).parse()
