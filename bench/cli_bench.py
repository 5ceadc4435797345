"""CLI output rates: `hubblectl observe --last N -o json > /dev/null`, and compact output,
against a server holding N flows, over the batched stream and Hubble's standard stream.

Method: this process serves the agent's real ObserverServicer/FlowStreamServicer, behind the
agent's HTTP/2 front door as the agent serves them, over a FlowStore filled with N realistic
flows (bench/stream_bench.py's fixture-derived flows) on a unix socket; the CLI runs as a child process exactly as a user runs it, stdout to /dev/null;
wall time from exec to exit (so CLI start-up, ~0.3-0.5 s here, is included: the rate is what
a user gets for N flows). HUBBLECTL_STANDARD_STREAM=1 makes the client use Hubble's per-flow
GetFlows stream, as it must against a stock Hubble server. ``compact-python`` is compact
output with the native renderer switched off (HUBBLECTL_NATIVE_LIB pointing nowhere), i.e. the
Python fast path the CLI falls back to when native/build/libhbflow.so is not built. Besides
the wall-clock rate, the CLI process's CPU time per flow (user + system, from
``RUSAGE_CHILDREN``) is reported, which other load on the machine inflates less.

    python3 bench/cli_bench.py [--quick] [--flows N] [--runs R] [--cases compact:batched,...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from bench.stream_bench import Bench  # noqa: E402
from observer.api.v1.observer import observer_pb2_grpc  # noqa: E402
from observer.server.front import FrontDoor  # noqa: E402
from observer.server.observer import FlowStreamServicer, NodeInfo, ObserverServicer  # noqa: E402

CASES = (
    ("json", "batched"),
    ("compact", "batched"),
    ("compact-python", "batched"),
    ("json", "standard"),
    ("compact", "standard"),
)


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _time_cli(target: str, n: int, fmt: str, stream: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `hubblectl observe` run."""
    env = {**os.environ}
    if stream == "standard":
        env["HUBBLECTL_STANDARD_STREAM"] = "1"
    if fmt == "compact-python":
        fmt = "compact"
        env["HUBBLECTL_NATIVE_LIB"] = "/nonexistent/libhbflow.so"
    cpu0 = _child_cpu()
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubblectl.cli.main", "observe", "--server", target,
        "--last", str(n), "-o", fmt, "--color", "never",
        stdout=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    rc = await proc.wait()
    if rc != 0:
        raise RuntimeError(f"observe -o {fmt} ({stream}) exited {rc}")
    return time.perf_counter() - t0, _child_cpu() - cpu0


async def _main(n: int, runs: int, cases: tuple[tuple[str, str], ...] = CASES) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hbcli") as tmp:
        bench = Bench(n, runs, Path(tmp) / "observer.sock")
        bench.fill()
        node = NodeInfo(name="default/bench", address=bench.target)
        server = grpc.aio.server()
        observer_pb2_grpc.add_ObserverServicer_to_server(
            ObserverServicer(bench.store, node), server
        )
        FlowStreamServicer(bench.store, node).add_to_server(server)
        # as the agent serves: grpc.aio on an internal socket behind the HTTP/2 front door
        # (observer/server/front.py), which serves both flow streams itself
        server.add_insecure_port(bench.direct)
        await server.start()
        front = FrontDoor(bench.store, node.name)
        await front.listen_unix(bench.sock, str(bench.internal))
        try:
            startup_runs = [
                await _time_cli(bench.target, 1, "json", "batched") for _ in range(runs)
            ]
            startup = min(wall for wall, _ in startup_runs)
            startup_cpu = min(cpu for _, cpu in startup_runs)
            out: dict[str, Any] = {
                "cli_flows": n,
                "cli_startup_s": round(startup, 2),
                "cli_startup_cpu_s": round(startup_cpu, 2),
            }
            # runs interleaved across cases, so load changes affect every case alike
            timings: dict[tuple[str, str], list[tuple[float, float]]] = {c: [] for c in cases}
            for _ in range(runs):
                for fmt, stream in cases:
                    timings[(fmt, stream)].append(await _time_cli(bench.target, n, fmt, stream))
            for (fmt, stream), results in timings.items():
                secs = [wall for wall, _ in results]
                best = min(secs)
                name = f"cli_{fmt.replace('-', '_')}_{stream}"
                out[f"{name}_flows_per_s"] = round(n / best)
                if best > startup * 1.2:  # else start-up noise dominates: no meaningful figure
                    out[f"{name}_flows_per_s_excl_startup"] = round(n / (best - startup))
                out[f"{name}_median_s"] = round(statistics.median(secs), 2)
                cpu = min(c for _, c in results)
                out[f"{name}_cpu_us_per_flow"] = round(cpu / n * 1e6, 2)
                if cpu > startup_cpu * 1.2:
                    out[f"{name}_cpu_us_per_flow_excl_startup"] = round(
                        (cpu - startup_cpu) / n * 1e6, 2
                    )
            return out
        finally:
            await front.stop(grace=None)
            await server.stop(grace=None)


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_main(16383 if quick else 65535, 1))


def main() -> None:
    ap = argparse.ArgumentParser(prog="cli_bench.py")
    ap.add_argument("--quick", action="store_true", help="16,383 flows, one run")
    ap.add_argument("--flows", type=int, default=65535)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument(
        "--cases",
        default=",".join(f"{fmt}:{stream}" for fmt, stream in CASES),
        help="comma-separated format:stream pairs (formats json, compact, compact-python; "
        "streams batched, standard)",
    )
    args = ap.parse_args()
    cases = tuple(tuple(c.split(":", 1)) for c in args.cases.split(",") if c)
    n = 16383 if args.quick else args.flows
    for k, v in asyncio.run(_main(n, args.runs, cases)).items():
        print(f"{k:52} {v}")


if __name__ == "__main__":
    main()
