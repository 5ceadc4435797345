"""CLI output rates: `hubblectl observe --last N -o json > /dev/null`, and compact output,
against a server holding N flows, over the batched stream and Hubble's standard stream.

Method: this process serves the agent's real ObserverServicer/FlowStreamServicer over a
FlowStore filled with N realistic flows (bench/stream_bench.py's fixture-derived flows) on a
unix socket; the CLI runs as a child process exactly as a user runs it, stdout to /dev/null;
wall time from exec to exit (so CLI start-up, ~0.3-0.5 s here, is included: the rate is what
a user gets for N flows). HUBBLECTL_STANDARD_STREAM=1 makes the client use Hubble's per-flow
GetFlows stream, as it must against a stock Hubble server.
"""

from __future__ import annotations

import asyncio
import os
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
from observer.server.observer import FlowStreamServicer, NodeInfo, ObserverServicer  # noqa: E402

CASES = (("json", "batched"), ("compact", "batched"), ("json", "standard"), ("compact", "standard"))


async def _time_cli(target: str, n: int, fmt: str, stream: str) -> float:
    env = {**os.environ}
    if stream == "standard":
        env["HUBBLECTL_STANDARD_STREAM"] = "1"
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubblectl.cli.main", "observe", "--server", target,
        "--last", str(n), "-o", fmt, "--color", "never",
        stdout=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    rc = await proc.wait()
    if rc != 0:
        raise RuntimeError(f"observe -o {fmt} ({stream}) exited {rc}")
    return time.perf_counter() - t0


async def _main(n: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hbcli") as tmp:
        bench = Bench(n, runs, Path(tmp) / "observer.sock")
        bench.fill()
        node = NodeInfo(name="default/bench", address=bench.target)
        server = grpc.aio.server()
        observer_pb2_grpc.add_ObserverServicer_to_server(ObserverServicer(bench.store, node), server)
        FlowStreamServicer(bench.store, node).add_to_server(server)
        server.add_insecure_port(bench.target)
        await server.start()
        try:
            startup = min([await _time_cli(bench.target, 1, "json", "batched") for _ in range(runs)])
            out: dict[str, Any] = {"cli_flows": n, "cli_startup_s": round(startup, 2)}
            for fmt, stream in CASES:
                secs = [await _time_cli(bench.target, n, fmt, stream) for _ in range(runs)]
                best = min(secs)
                out[f"cli_{fmt}_{stream}_flows_per_s"] = round(n / best)
                if best > startup * 1.2:  # else start-up noise dominates: no meaningful figure
                    out[f"cli_{fmt}_{stream}_flows_per_s_excl_startup"] = round(n / (best - startup))
                out[f"cli_{fmt}_{stream}_median_s"] = round(statistics.median(secs), 2)
            return out
        finally:
            await server.stop(grace=None)


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_main(16383 if quick else 65535, 1))


if __name__ == "__main__":
    for k, v in run("--quick" in sys.argv).items():
        print(f"{k:48} {v}")
