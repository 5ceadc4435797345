"""Flow store and filter benchmark: memory per stored flow, append, select and filter costs.

Method: a FlowStore is filled to capacity with distinct compact-JSON responses made from a
typical fixture flow (own uuid and time each), and again from all fixture flows in turn
(trace, drop, policy verdict, L7) with random v4 uuids, random ns and random source ports
("mixed": the realistic figure, since sealed blocks are compressed); memory per flow = bytes
still traced by tracemalloc afterwards / capacity (JSON bytes, compressed blocks and slot
arrays included). Append,
select and follower costs are the best of 3-5 timed runs over such a full store; filter costs
are compiled filters run over the fixture flows (perf_counter, best of 5).

    python3 bench/store_bench.py [--capacity 65535] [--json out.json]
    python3 -m bench --only store [--quick]      (the runner: flat figures via run())
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from observer.filters import compile_filters  # noqa: E402
from observer.store import EntryKind, FlowStore, flow_entry_predicate  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "flows.jsonl"


def typical_response() -> dict[str, Any]:
    """The first fixture flow: a TCP SYN between two pods with labels, as the agent emits."""
    line = FIXTURES.read_bytes().splitlines()[0]
    response: dict[str, Any] = orjson.loads(line)
    return response


def variant(response: dict[str, Any], i: int, rng: random.Random | None = None) -> bytes:
    """A distinct copy: its own uuid (random v4 with ``rng``, as the agent makes them) and time;
    with ``rng`` also a random ephemeral source port, as real connections have."""
    flow = response["flow"]
    if rng is None:
        flow["uuid"] = f"8c3e9a52-1c1f-4d0a-9a37-{i:012x}"
        ns = i % 1_000_000_000
    else:
        flow["uuid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ns = rng.randrange(1_000_000_000)
        tcp = (flow.get("l4") or {}).get("TCP") or (flow.get("l4") or {}).get("UDP")
        if tcp and "source_port" in tcp:
            tcp["source_port"] = rng.randrange(32768, 61000)
    stamp = f"2026-11-26T12:{(i // 60) % 60:02d}:{i % 60:02d}.{ns:09d}Z"
    flow["time"] = response["time"] = stamp
    return orjson.dumps(response)


def mixed_responses() -> list[dict[str, Any]]:
    """Every fixture flow (trace, drop, policy verdict, L7 HTTP/DNS, ...), used in turn."""
    return [
        orjson.loads(line)
        for line in FIXTURES.read_bytes().splitlines()
        if line.startswith(b'{"flow"')
    ]


def _fill_traced(capacity: int, compact: bool, seal: bool, mixed: bool) -> tuple[float, float, float]:
    """(empty store bytes per slot, bytes per stored flow, mean JSON length) for a store
    filled to capacity, with the typical flow or the mixed fixture flows (random uuids and
    ports)."""
    responses = mixed_responses() if mixed else [typical_response()]
    rng = random.Random(7) if mixed else None
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    store = FlowStore(capacity, compact=compact, seal=seal)
    empty, _ = tracemalloc.get_traced_memory()
    total_len = 0
    for i in range(capacity):
        data = variant(responses[i % len(responses)], i, rng)
        total_len += len(data)
        store.append(1_700_000_000_000_000_000 + i, EntryKind.FLOW, data)
    full, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(store) == capacity
    return (empty - before) / (capacity + 1), (full - before) / capacity, total_len / capacity


def measure_memory(capacity: int) -> dict[str, float]:
    sample = variant(typical_response(), 0)
    per_slot, per_flow, _ = _fill_traced(capacity, compact=True, seal=True, mixed=False)
    _, per_flow_mixed, mixed_len = _fill_traced(capacity, compact=True, seal=True, mixed=True)
    _, per_flow_unsealed, _ = _fill_traced(capacity, compact=True, seal=False, mixed=True)
    _, per_flow_uncompacted, _ = _fill_traced(capacity, compact=False, seal=False, mixed=True)
    return {
        "capacity": capacity,
        "json_bytes_per_flow": len(sample),
        "bytes_object_size": sys.getsizeof(sample),
        "empty_store_bytes_per_slot": per_slot,
        "bytes_per_stored_flow": per_flow,
        "mixed_json_bytes_per_flow": mixed_len,
        "bytes_per_stored_flow[mixed]": per_flow_mixed,
        "bytes_per_stored_flow[mixed,seal=False]": per_flow_unsealed,
        "total_mib[mixed]": per_flow_mixed * capacity / 2**20,
        "bytes_per_stored_flow[mixed,seal=False,compact=False]": per_flow_uncompacted,
    }


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_speed(capacity: int) -> dict[str, float]:
    response = typical_response()
    payloads = [variant(response, i) for i in range(capacity)]
    base = 1_700_000_000_000_000_000

    def fill(compact: bool) -> tuple[float, FlowStore]:
        """Time the agent's ingest step: orjson.dumps of a response dict, then append."""
        store = FlowStore(capacity, compact=compact)
        append = store.append
        dumps = orjson.dumps
        flow = EntryKind.FLOW
        start = time.perf_counter()
        for i in range(capacity):
            append(base + i, flow, dumps(response))
        store.notify()
        return time.perf_counter() - start, store

    def fill_prepared(seal: bool = True) -> tuple[float, FlowStore]:
        """append alone, with exact-size payloads made beforehand; twice the capacity, so
        that the writer also wraps into sealed blocks. Seconds per capacity appends."""
        store = FlowStore(capacity, compact=False, seal=seal)
        append = store.append
        flow = EntryKind.FLOW
        start = time.perf_counter()
        for i, data in enumerate(payloads + payloads):
            append(base + i, flow, data)
        store.notify()
        return (time.perf_counter() - start) / 2, store

    payloads = [b"".join((p, b"")) for p in payloads]  # exact-size copies

    def best(fn: Callable[[], tuple[float, FlowStore]]) -> tuple[float, FlowStore]:
        """Best of 3; each store is freed after its timing, outside the timed region."""
        results = []
        for _ in range(3):
            seconds, filled_store = fn()
            results.append(seconds)
        return min(results), filled_store

    dumps_append_s, store = best(lambda: fill(True))
    dumps_append_raw_s, _ = best(lambda: fill(False))
    append_s, _ = best(fill_prepared)
    append_unsealed_s, _ = best(lambda: fill_prepared(False))
    flows = [
        orjson.loads(line)["flow"]
        for line in FIXTURES.read_bytes().splitlines()
        if b'"flow"' in line[:8]
    ]
    filters = [
        ("no filter", [], []),
        ("source_pod", [{"source_pod": ["default/"]}], []),
        ("label+verdict", [{"source_label": ["k8s:class=xwing"], "verdict": ["FORWARDED"]}], []),
        (
            "cidr+port --not dns",
            [{"destination_ip": ["10.0.0.0/8"], "destination_port": ["80"]}],
            [{"protocol": ["dns"]}],
        ),
    ]
    out: dict[str, float] = {
        "append_ns_per_flow": append_s / capacity * 1e9,
        "append_ns_per_flow[seal=False]": append_unsealed_s / capacity * 1e9,
        "dumps+append_ns_per_flow": dumps_append_s / capacity * 1e9,
        "dumps+append_ns_per_flow[compact=False]": dumps_append_raw_s / capacity * 1e9,
    }
    for name, wl, bl in filters:
        pred = compile_filters(wl, bl)
        loops = 20_000 // len(flows)

        def run(p: Callable[[dict[str, Any]], bool] = pred, n: int = loops) -> None:
            for _ in range(n):
                for f in flows:
                    p(f)

        per = timed(run) / (loops * len(flows))
        out[f"filter_ns_per_flow[{name}]"] = per * 1e9
    entry_pred = flow_entry_predicate(compile_filters([{"source_label": ["k8s:class=xwing"]}], []))
    out["select_all_no_predicate_ms"] = timed(lambda: store.select()) * 1e3
    out["select_last20_predicate_ms"] = (
        timed(lambda: store.select(number=20, predicate=entry_pred)) * 1e3
    )
    out["select_all_predicate_ms"] = timed(lambda: store.select(predicate=entry_pred), 2) * 1e3
    out["follower_poll_all_ms"] = timed(lambda: store.follower(store.oldest_seq).poll()) * 1e3
    return out


def calibrate() -> float:
    """ns per iteration of a trivial Python loop: ~30-40 ns on an idle core of this machine
    kind; divide the timings by it to compare runs taken under different load."""

    def loop() -> None:
        x = 0
        for i in range(1_000_000):
            x += i

    return timed(loop) / 1_000_000 * 1e9


FILTER_SLUGS = {
    "no filter": "none",
    "source_pod": "source_pod",
    "label+verdict": "label_verdict",
    "cidr+port --not dns": "cidr_port_not_dns",
}


def measure(capacity: int) -> dict[str, float]:
    return {
        "calibration_ns_per_loop_iteration": calibrate(),
        **measure_memory(capacity),
        **measure_speed(capacity),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """For ``python -m bench``: flat figures (quick: a 16,383-flow store instead of 65,535)."""
    capacity = 16383 if quick else 65535
    r = {**measure_memory(capacity), **measure_speed(capacity)}
    out: dict[str, Any] = {
        "store_capacity": capacity,
        "store_json_bytes_per_flow": int(r["json_bytes_per_flow"]),
        "store_mixed_json_bytes_per_flow": round(r["mixed_json_bytes_per_flow"]),
        "store_bytes_per_flow": round(r["bytes_per_stored_flow[mixed]"]),
        "store_bytes_per_flow_typical": round(r["bytes_per_stored_flow"]),
        "store_bytes_per_flow_unsealed": round(r["bytes_per_stored_flow[mixed,seal=False]"]),
        "store_bytes_per_flow_uncompacted": round(
            r["bytes_per_stored_flow[mixed,seal=False,compact=False]"]
        ),
        "store_append_unsealed_flows_per_s": round(1e9 / r["append_ns_per_flow[seal=False]"]),
        "store_append_flows_per_s": round(1e9 / r["append_ns_per_flow"]),
        "store_dumps_append_flows_per_s": round(1e9 / r["dumps+append_ns_per_flow"]),
    }
    for name, slug in FILTER_SLUGS.items():
        out[f"store_filter_{slug}_flows_per_s"] = round(1e9 / r[f"filter_ns_per_flow[{name}]"])
    out["store_select_all_s"] = round(r["select_all_no_predicate_ms"] / 1e3, 4)
    out["store_select_last20_predicate_s"] = round(r["select_last20_predicate_ms"] / 1e3, 6)
    out["store_select_all_predicate_s"] = round(r["select_all_predicate_ms"] / 1e3, 4)
    out["store_follower_poll_all_s"] = round(r["follower_poll_all_ms"] / 1e3, 4)
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=65535)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    results = measure(args.capacity)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:12.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
