"""Output formats for ``hubblectl observe`` (and the status/list renderings).

``make_printer(fmt, opts, out, err)`` returns a ``Printer`` for one of ``compact`` (default),
``dict``, ``table`` (``tab``), ``json`` and ``jsonpb`` (same as json). Formatting of single
fields is pure and lives in ``fields``; every string from the data passes ``escape.escape``.
"""

from __future__ import annotations

from typing import TextIO

from hubblectl.errors import UsageError
from hubblectl.printer.base import Printer
from hubblectl.printer.compact import CompactPrinter
from hubblectl.printer.dict import DictPrinter
from hubblectl.printer.json import JSONPrinter
from hubblectl.printer.options import OUTPUT_ALIASES, PrinterOptions
from hubblectl.printer.table import TablePrinter

__all__ = ["Printer", "PrinterOptions", "canonical_format", "make_printer"]


def canonical_format(fmt: str) -> str:
    """``tab`` -> ``table``, ``JSON`` -> ``json``; ``UsageError`` for unknown formats."""
    name = OUTPUT_ALIASES.get(fmt.lower())
    if name is None:
        raise UsageError(f"invalid output format: {fmt}")
    return name


def make_printer(fmt: str, opts: PrinterOptions, out: TextIO, err: TextIO) -> Printer:
    """A printer for ``fmt`` writing to ``out`` (and ``err`` for node-status events)."""
    name = canonical_format(fmt)
    if name == "compact":
        return CompactPrinter(opts, out, err)
    if name == "dict":
        return DictPrinter(opts, out, err)
    if name == "table":
        return TablePrinter(opts, out, err)
    return JSONPrinter(opts, out, err)
