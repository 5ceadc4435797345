"""Printer options and colour handling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from hubblectl.printer.timefmt import DEFAULT_TIME_FORMAT

OUTPUT_FORMATS: Final = ("compact", "dict", "table", "json", "jsonpb")
# Hubble's accepted spellings -> canonical name.
OUTPUT_ALIASES: Final = MappingProxyType(
    {
        "compact": "compact",
        "dict": "dict",
        "table": "table",
        "tab": "table",
        "json": "json",
        "jsonpb": "jsonpb",
    }
)

COLOR_MODES: Final = ("auto", "always", "never")


@dataclass(frozen=True, slots=True)
class PrinterOptions:
    """How flows are rendered.

    ``color`` is the resolved decision (see ``resolve_color``), not the ``--color`` mode.
    ``debug`` shows every relay node-status event (otherwise only errors/unavailable nodes).
    ``silent_errors`` drops everything the printer would write to stderr.
    """

    time_format: str = DEFAULT_TIME_FORMAT
    print_node_name: bool = False
    numeric: bool = False
    ip_translation: bool = True
    color: bool = False
    print_policy_names: bool = False
    debug: bool = False
    silent_errors: bool = False

    @property
    def translate_ips(self) -> bool:
        return self.ip_translation and not self.numeric


def resolve_color(mode: str, *, is_tty: bool, env: Mapping[str, str]) -> bool:
    """Decide whether to colour: ``always``/``never`` win; ``auto`` colours a terminal unless
    ``NO_COLOR`` is set to a non-empty value or ``TERM=dumb``."""
    mode = mode.lower()
    if mode == "always":
        return True
    if mode == "never":
        return False
    if env.get("NO_COLOR", ""):
        return False
    if env.get("TERM") == "dumb":
        return False
    return is_tty


# ANSI SGR sequences, as fatih/color emits them.
RESET: Final = "\x1b[0m"
RED: Final = "\x1b[31m"
GREEN: Final = "\x1b[32m"
YELLOW: Final = "\x1b[33m"
BLUE: Final = "\x1b[34m"
MAGENTA: Final = "\x1b[35m"
CYAN: Final = "\x1b[36m"


@dataclass(frozen=True, slots=True)
class Colors:
    """Wraps already-escaped text in colour sequences when enabled (Hubble's palette)."""

    enabled: bool = False

    def _wrap(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.enabled else text

    def host(self, text: str) -> str:
        return self._wrap(CYAN, text)

    def port(self, text: str) -> str:
        return self._wrap(YELLOW, text)

    def identity(self, text: str) -> str:
        return self._wrap(MAGENTA, text)

    def red(self, text: str) -> str:
        return self._wrap(RED, text)

    def green(self, text: str) -> str:
        return self._wrap(GREEN, text)

    def yellow(self, text: str) -> str:
        return self._wrap(YELLOW, text)
