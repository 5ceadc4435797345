"""Check the agent's HTTP/2 front door with a gRPC client that is not grpcio: @grpc/grpc-js.

Every other test talks to the agent through grpcio (C-core). Hubble's CLI and UI use grpc-go,
which is not available offline here; grpc-js is a third, independent implementation of gRPC
over HTTP/2 (its own framing, flow control and HPACK), so it catches what a C-core-only test
would not. Not part of the test suite (it needs Node.js and npm packages):

    npm ci --prefix tests/compat/grpc-js   (or npm install)
    python3 tests/compat/run_grpc_js.py [--flows 20000]

It serves a store of ``--flows`` realistic flows as the agent does (grpc.aio on an internal
socket, the front door on TCP), runs client.js and checks: ServerStatus through the proxy,
GetFlows ``number=N`` (every flow, in store order, with the ``hubble-server-version``
metadata), and INVALID_ARGUMENT naming the field for a malformed CIDR. Exit status 0 when all
hold; prints the client's rate (grpc-js decoding in one JavaScript thread is the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
import orjson  # noqa: E402

from bench.stream_bench import realistic_entries  # noqa: E402
from observer import __version__  # noqa: E402
from observer.api.v1.observer import observer_pb2_grpc  # noqa: E402
from observer.server.front import FrontDoor  # noqa: E402
from observer.server.observer import NodeInfo, ObserverServicer  # noqa: E402
from observer.store import FlowStore  # noqa: E402

HERE = Path(__file__).resolve().parent / "grpc-js"


async def check(flows: int) -> list[str]:
    store = FlowStore(65535)
    uuids = []
    for t, kind, data in realistic_entries(flows):
        store.append(t, kind, data)
        uuids.append(orjson.loads(data)["flow"]["uuid"])
    store.notify()
    node = NodeInfo(name="default/compat", address="")
    with tempfile.TemporaryDirectory(prefix="hbcompat") as tmp:
        internal = str(Path(tmp) / "grpc.sock")
        server = grpc.aio.server()
        observer_pb2_grpc.add_ObserverServicer_to_server(ObserverServicer(store, node), server)
        server.add_insecure_port(f"unix://{internal}")
        await server.start()
        front = FrontDoor(store, node.name)
        try:
            port = await front.listen_tcp("127.0.0.1:0", internal)
            proc = await asyncio.create_subprocess_exec(
                "node", str(HERE / "client.js"), f"127.0.0.1:{port}",
                str(REPO / "proto" / "observer" / "api" / "v1"), str(flows),
                stdout=asyncio.subprocess.PIPE, cwd=HERE,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            await front.stop(grace=None)
            await server.stop(None)
    if proc.returncode != 0:
        return [f"client.js exited {proc.returncode}"]
    got = json.loads(out)
    problems = []
    if got["status"] != {"num_flows": flows, "max_flows": 65535}:
        problems.append(f"ServerStatus: {got['status']}")
    gf = got["get_flows"]
    if gf["error"] is not None:
        problems.append(f"GetFlows failed: {gf['error']}")
    if gf["uuids"] != uuids:
        problems.append(f"GetFlows: {len(gf['uuids'])} flows, not the store's {flows} in order")
    if gf["version"] != __version__:
        problems.append(f"hubble-server-version metadata: {gf['version']!r}")
    bad = got["bad_request"] or {}
    if bad.get("code") != grpc.StatusCode.INVALID_ARGUMENT.value[0] or "source_ip" not in bad.get(
        "details", ""
    ):
        problems.append(f"malformed CIDR: {bad}")
    rate = flows / got["seconds"] if got["seconds"] else 0.0
    print(f"grpc-js: {flows} flows in {got['seconds']:.2f} s ({rate:,.0f}/s), bad request -> {bad}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=20000)
    args = ap.parse_args()
    if shutil.which("node") is None or not (HERE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        print("needs node and `npm ci --prefix tests/compat/grpc-js`", file=sys.stderr)
        return 2
    problems = asyncio.run(check(args.flows))
    for p in problems:
        print("FAIL", p)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
