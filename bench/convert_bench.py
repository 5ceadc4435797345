#!/usr/bin/env python3
"""Rates of observer.api.convert against google.protobuf.json_format on the fixture flows.

Method: every response of tests/fixtures/flows.jsonl (flows, a lost-events notice, a node
status) is converted dict -> proto and proto -> dict by both converters (equal messages are
checked first), and proto -> JSON line by convert alone. Each is timed in 5 rounds of about
--seconds (loop count calibrated first); reported: the best rate of each and their ratio.

Standard-stream framing (observer.api.grpcframe): a batch of 256 fixture lines (what one
sealed store block holds) -> gRPC-framed GetFlowsResponse messages, by the Python path
(orjson.loads + response_to_proto + SerializeToString per line) and by the native
transcoder (native/hbpb.c, one call per batch; equal bytes checked first), timed in CPU
seconds (process_time: the machine is shared) with the two interleaved round by round.

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

from observer.api import convert, grpcframe
from observer.api.v1.observer import observer_pb2
from observer.errors import ObserverError
from observer.native.transcode import load_transcoder, transcoder_problem

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "flows.jsonl"


def _calibrate(fn: Callable[[], object], seconds: float, clock: Callable[[], float]) -> int:
    loops = 1
    while True:
        t0 = clock()
        for _ in range(loops):
            fn()
        dt = clock() - t0
        if dt >= seconds / 4:
            return max(1, int(loops * seconds / dt))
        loops *= 2


def rate(
    fn: Callable[[], object],
    items: int,
    seconds: float,
    rounds: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best items/s over `rounds` rounds of about `seconds` each."""
    loops = _calibrate(fn, seconds, clock)
    best = float("inf")
    for _ in range(rounds):
        t0 = clock()
        for _ in range(loops):
            fn()
        best = min(best, clock() - t0)
    return loops * items / best


FRAME_BATCH = 256


def frame_rates(seconds: float, rounds: int = 5) -> dict[str, Any]:
    """Lines/s (CPU time) of grpcframe's Python path and native transcoder, interleaved."""
    lines = [line for line in FIXTURES.read_bytes().splitlines() if line]
    batch = (lines * (FRAME_BATCH // len(lines) + 1))[:FRAME_BATCH]
    python = grpcframe.frame_response_lines_python
    result: dict[str, Any] = {"batch": len(batch), "python_per_s": None, "native_per_s": None}
    t = load_transcoder()
    fns: dict[str, Callable[[], object]] = {"python": lambda: python(batch)}
    if t is None:
        result["native_problem"] = transcoder_problem()
    else:
        if t.frame_lines(batch, grpcframe.frame_response_line) != python(batch):
            raise ObserverError("native transcoder and Python path disagree on the fixtures")
        if any(x is None for x in t.transcode(batch)):
            raise ObserverError("the native transcoder declined a fixture line")
        fns["native"] = lambda: t.frame_lines(batch, grpcframe.frame_response_line)
    clock = time.process_time
    loops = {name: _calibrate(fn, seconds, clock) for name, fn in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = clock()
            for _ in range(loops[name]):
                fn()
            best[name] = min(best[name], clock() - t0)
    for name in fns:
        result[f"{name}_per_s"] = loops[name] * len(batch) / best[name]
    return result


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
        "frame_response_lines": frame_rates(seconds),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """For ``python -m bench``: flat figures (quick: rounds of 0.1 s instead of 0.5 s)."""
    r = measure(0.1 if quick else 0.5)
    inp, out, fr = r["dict_to_proto"], r["proto_to_dict"], r["frame_response_lines"]
    native, python = fr["native_per_s"], fr["python_per_s"]
    return {
        "grpcframe_python_lines_per_s": round(python),
        "grpcframe_native_lines_per_s": round(native) if native else None,
        "grpcframe_native_speedup": round(native / python, 1) if native else None,
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
    fr = results["frame_response_lines"]
    py, nat = fr["python_per_s"], fr["native_per_s"]
    line = f"frame_response_lines (batches of {fr['batch']}, CPU time) python {py:10,.0f}/s ({1e6 / py:6.1f} us)"
    if nat:
        line += f"   native {nat:10,.0f}/s ({1e6 / nat:6.2f} us)   x{nat / py:.1f}"
    else:
        line += f"   native unavailable: {fr['native_problem']}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
