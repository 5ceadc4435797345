"""Run every benchmark, print a table, write bench/results.json.

    python -m bench [--quick] [--only NAME[,NAME]] [--out FILE]

Each benchmark module exposes run(quick: bool) -> dict of figures. Privileged ones (BPF,
netns) need root. The machine is noisy: compare ratios measured within one run, and see
docs/performance.md for the method behind each figure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCHES = [
    ("ingest", "bench.ingest_bench", True),
    ("datapath", "bench.datapath_bench", True),
    ("parser", "bench.parser_bench", False),
    ("convert", "bench.convert_bench", False),
    ("store", "bench.store_bench", False),
    ("stream", "bench.stream_bench", False),
    ("cli", "bench.cli_bench", False),
    ("printer", "bench.printer_bench", False),
    ("relay", "bench.relay_bench", False),
    ("policy", "bench.policy_bench", False),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    args = ap.parse_args(argv)
    only = {n for n in args.only.split(",") if n}
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "kernel": platform.release(), "cpus": os.cpu_count(),
                    "loadavg": os.getloadavg()[0]},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
    }
    failed = 0
    for name, module, privileged in BENCHES:
        if only and name not in only:
            continue
        if privileged and os.geteuid() != 0:
            print(f"{name:10} skipped (needs root)")
            continue
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(module)
            figures = mod.run(quick=args.quick)
        except Exception as exc:  # a failing benchmark is reported, the others still run
            failed += 1
            print(f"{name:10} FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        took = time.perf_counter() - t0
        results[name] = {**figures, "seconds": round(took, 1)}
        for key, value in figures.items():
            print(f"{name:10} {key:48} {value}")
        print(f"{name:10} {'(took)':48} {took:.1f}s")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
