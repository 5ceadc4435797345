"""Terminal escaping for every string that comes from the network (or an input file).

A flow carries attacker-controlled text: DNS names, HTTP paths, labels, pod names, the
Summary. Printed raw, ``\\x1b[2J`` clears the screen, an OSC sequence retitles the window or
writes to the clipboard, and a CR overwrites what was printed before. Hubble replaces ESC with
``^[`` and CR with a literal ``\\r``; we do the same and go further: every other C0 control
character, DEL, every C1 control (U+0080..U+009F, which some terminals honour as 8-bit CSI/OSC)
and the Unicode bidi overrides are shown as visible escapes (``\\n``, ``\\t``, ``\\x07``,
``\\x9b``, ``\\u202e``). Escaping happens before the printer adds its own colour sequences, so no
sequence from the data can pose as one of ours (Hubble escapes after colouring and lets any
sequence equal to one of its colours through).

``sanitize_json`` does the equivalent for JSON bytes passed through unparsed: raw control
bytes (invalid in JSON, so only a misbehaving server sends them), UTF-8 encoded C1 controls
and bidi overrides become ``\\uXXXX`` escapes, which decode to the same string.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

# Characters that must never reach a terminal unescaped.
_NEEDS_ESCAPE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)

_NAMED: Final = MappingProxyType(
    {
        "\x1b": "^[",
        "\r": "\\r",
        "\n": "\\n",
        "\t": "\\t",
    }
)


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape(text: str) -> str:
    """Make ``text`` safe to write to a terminal (see the module docstring)."""
    # Every character _NEEDS_ESCAPE matches is a control (Cc) or format (Cf) character, which
    # str.isprintable rejects: a printable string needs nothing (the common case, one C scan).
    if text.isprintable() or _NEEDS_ESCAPE.search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(_escape_char, text)


# JSON: raw control bytes other than the line feed that frames records, DEL, and the UTF-8
# encodings of C1 controls and bidi overrides.
_JSON_UNSAFE: Final = re.compile(
    rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]"
)


def _json_escape(match: re.Match[bytes]) -> bytes:
    code = ord(match.group(0).decode("utf-8", errors="replace"))
    return b"\\u%04x" % code


_PRINTABLE_ASCII: Final = bytes(range(0x20, 0x7F)) + b"\n"


def sanitize_json(data: bytes) -> bytes:
    """Replace raw control bytes in newline-framed JSON with ``\\u00XX`` escapes."""
    # Fast path (C speed): printable ASCII plus line feeds needs nothing.
    if data.isascii() and not data.translate(None, _PRINTABLE_ASCII):
        return data
    if _JSON_UNSAFE.search(data) is None:
        return data
    return _JSON_UNSAFE.sub(_json_escape, data)


def go_quote(text: str) -> str:
    """A double-quoted string literal in the style of Go's ``strconv.Quote`` (ASCII subset).

    Used where Hubble prints ``%q`` (node-status error messages). The result never contains a
    raw control character.
    """
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif _NEEDS_ESCAPE.match(ch) is not None or not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
