"""Printer benchmark: GetFlowsResponse JSON lines -> compact text, flows/s, in-process.

Method: the stream benchmark's flows (bench/stream_bench.py ``realistic_entries``: the
fixture flows of tests/fixtures/flows.jsonl in turn, each with its own uuid and time, 65,535
of them) are joined into newline-terminated chunks of 512 lines (about what one
``FlowBatch`` of the batched stream carries) and handed to ``printer.write_json`` chunk by
chunk, exactly as ``hubblectl observe`` does; the text goes to an in-memory sink that only
counts characters. Rate = flows / process CPU time, best of R runs (CPU time, so other load
on the shared machine inflates it less). Cases: the default options, colour, ``--numeric``
with ``--print-node-name``, ``--time-format RFC3339Nano``, ``--print-policy-names``, each
through the native renderer (``compact_native``: what the CLI uses when
native/build/libhbflow.so is built; keys without a suffix) and through the Python fast path
(``_python``: the CLI's fallback), runs interleaved; the default options through the generic
(field-by-field) formatter; and ``orjson.loads`` of the lines alone (what any path that
decodes every line cannot go below; the native path does not decode learnt lines).

    python3 bench/printer_bench.py [--flows N] [--repeat R]
    python3 -m bench --only printer [--quick]      (the runner: flat figures via run())
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TextIO, cast

import orjson

REPO: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stream_bench import realistic_entries  # noqa: E402
from hubblectl.printer.compact import CompactPrinter  # noqa: E402
from hubblectl.printer.compact_native import load_functions  # noqa: E402
from hubblectl.printer.options import PrinterOptions  # noqa: E402

CHUNK_LINES: Final = 512
CASES: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("default", {}),
    ("color", {"color": True}),
    ("numeric_node_name", {"numeric": True, "print_node_name": True}),
    ("rfc3339nano", {"time_format": "RFC3339Nano"}),
    ("policy_names", {"print_policy_names": True}),
)


class _Sink(io.TextIOBase):
    """A text stream that keeps only the number of characters written."""

    def __init__(self) -> None:
        super().__init__()
        self.chars = 0

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)

    def writable(self) -> bool:
        return True


def chunks(n: int) -> list[bytes]:
    lines = [data for _, _, data in realistic_entries(n)]
    return [
        b"\n".join(lines[i : i + CHUNK_LINES]) + b"\n" for i in range(0, len(lines), CHUNK_LINES)
    ]


def _best_cpu(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _print_all(
    data: list[bytes], opts: PrinterOptions, *, fast: bool, native: bool | None = False
) -> int:
    sink = _Sink()
    out = cast(TextIO, sink)
    printer = CompactPrinter(opts, out, out, fast=fast, native=native)
    for chunk in data:
        printer.write_json(chunk)
    printer.close()
    return sink.chars


def _loads_only(data: list[bytes]) -> None:
    loads = orjson.loads
    for chunk in data:
        for line in chunk.split(b"\n"):
            if line:
                loads(line)


def measure(n: int, repeat: int) -> dict[str, Any]:
    data = chunks(n)
    out: dict[str, Any] = {"printer_flows": n}
    secs = _best_cpu(lambda: _loads_only(data), repeat)
    out["printer_orjson_loads_only_flows_per_s"] = round(n / secs)
    secs = _best_cpu(lambda: _print_all(data, PrinterOptions(), fast=False), repeat)
    out["printer_compact_generic_flows_per_s"] = round(n / secs)
    native = load_functions() is not None
    out["printer_native_available"] = native
    for name, options in CASES:
        opts = PrinterOptions(**options)
        best = {"": float("inf"), "_python": float("inf")}
        for _ in range(repeat):  # interleaved, so load changes affect both alike
            for suffix, use_native in (("", True), ("_python", False)):
                if use_native and not native:
                    continue
                t0 = time.process_time()
                _print_all(data, opts, fast=True, native=use_native)
                best[suffix] = min(best[suffix], time.process_time() - t0)
        for suffix, secs in best.items():
            if secs != float("inf"):
                out[f"printer_compact_{name}{suffix}_flows_per_s"] = round(n / secs)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    return measure(16383 if quick else 65535, 2 if quick else 3)


def main() -> None:
    ap = argparse.ArgumentParser(prog="printer_bench.py")
    ap.add_argument("--flows", type=int, default=65535)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for key, value in measure(args.flows, args.repeat).items():
        print(f"{key:48} {value}")


if __name__ == "__main__":
    main()
