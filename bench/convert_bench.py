#!/usr/bin/env python3
"""Rates of observer.api.convert against google.protobuf.json_format on the fixture flows.

Method: every response of tests/fixtures/flows.jsonl (flows, a lost-events notice, a node
status) is converted dict -> proto and proto -> dict by both converters (equal messages are
checked first), and proto -> JSON line by convert alone. Each is timed in 5 rounds of about
--seconds (loop count calibrated first); reported: the best rate of each and their ratio.

    python3 bench/convert_bench.py [--seconds 0.5] [--json]
    python3 -m bench --only convert [--quick]      (the runner: flat figures via run())
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import json_format

from observer.api import convert
from observer.api.v1.observer import observer_pb2
from observer.errors import ObserverError

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "flows.jsonl"


def rate(fn: Callable[[], object], items: int, seconds: float, rounds: int = 5) -> float:
    """Best items/s over `rounds` rounds of about `seconds` each."""
    loops = 1
    while True:  # calibrate
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        dt = time.perf_counter() - t0
        if dt >= seconds / 4:
            break
        loops *= 2
    loops = max(1, int(loops * seconds / dt))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, time.perf_counter() - t0)
    return loops * items / best


def measure(seconds: float) -> dict[str, Any]:
    """Rates (responses/s) of each converter in each direction; ObserverError on a mismatch."""
    dicts: list[dict[str, Any]] = [
        orjson.loads(line) for line in FIXTURES.read_bytes().splitlines() if line
    ]
    msgs = [convert.response_to_proto(d) for d in dicts]
    for d, m in zip(dicts, msgs, strict=True):
        if json_format.ParseDict(d, observer_pb2.GetFlowsResponse()) != m:
            raise ObserverError(f"convert and json_format disagree on {d}")

    def parse_dict() -> None:
        for d in dicts:
            json_format.ParseDict(d, observer_pb2.GetFlowsResponse())

    def fast_in() -> None:
        for d in dicts:
            convert.response_to_proto(d)

    def message_to_dict() -> None:
        for m in msgs:
            json_format.MessageToDict(m, preserving_proto_field_name=True)

    def fast_out() -> None:
        for m in msgs:
            convert.proto_to_dict(m)

    def json_line() -> None:
        for m in msgs:
            convert.response_to_json_line(m)

    n = len(dicts)
    return {
        "responses": n,
        "dict_to_proto": {
            "json_format_per_s": rate(parse_dict, n, seconds),
            "convert_per_s": rate(fast_in, n, seconds),
        },
        "proto_to_dict": {
            "json_format_per_s": rate(message_to_dict, n, seconds),
            "convert_per_s": rate(fast_out, n, seconds),
        },
        "response_to_json_line_per_s": rate(json_line, n, seconds),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """For ``python -m bench``: flat figures (quick: rounds of 0.1 s instead of 0.5 s)."""
    r = measure(0.1 if quick else 0.5)
    inp, out = r["dict_to_proto"], r["proto_to_dict"]
    return {
        "convert_response_to_proto_responses_per_s": round(inp["convert_per_s"]),
        "convert_parse_dict_responses_per_s": round(inp["json_format_per_s"]),
        "convert_response_to_proto_speedup": round(
            inp["convert_per_s"] / inp["json_format_per_s"], 2
        ),
        "convert_proto_to_dict_responses_per_s": round(out["convert_per_s"]),
        "convert_message_to_dict_responses_per_s": round(out["json_format_per_s"]),
        "convert_proto_to_dict_speedup": round(out["convert_per_s"] / out["json_format_per_s"], 2),
        "convert_response_to_json_line_responses_per_s": round(r["response_to_json_line_per_s"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="time per round (default 0.5)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)
    try:
        results = measure(args.seconds)
    except ObserverError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        del results["responses"]
        print(orjson.dumps(results).decode())
        return 0
    print(
        f"{results['responses']} fixture responses (tests/fixtures/flows.jsonl), best of 5 rounds"
    )
    for name in ("dict_to_proto", "proto_to_dict"):
        r = results[name]
        slow, fast = r["json_format_per_s"], r["convert_per_s"]
        print(
            f"{name:14s} json_format {slow:10,.0f}/s ({1e6 / slow:6.1f} us)   "
            f"convert {fast:10,.0f}/s ({1e6 / fast:6.1f} us)   x{fast / slow:.1f}"
        )
    jl = results["response_to_json_line_per_s"]
    print(f"response_to_json_line {jl:10,.0f}/s ({1e6 / jl:6.1f} us)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
