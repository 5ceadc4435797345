#!/usr/bin/env python3
"""Generate the Python protobuf/gRPC modules under observer/api/v1 from proto/observer/api/v1.

    python3 scripts/gen_proto.py            # regenerate in place
    python3 scripts/gen_proto.py --check    # regenerate into a temp dir, exit 1 naming files that differ
    (--target DIR compares with / writes to DIR instead of observer/api/v1)

The protos are compiled with ``-I proto/observer/api/v1``, so descriptor file names equal
Hubble's (``flow/flow.proto``, ``observer/observer.proto``, ...), which is what gRPC server
reflection serves. protoc then emits imports such as ``from flow import flow_pb2``; they are
rewritten to ``from observer.api.v1.flow import flow_pb2`` so no top-level ``flow``/``relay``/...
module is needed and ``observer`` is not mistaken for our own top-level package.

Per proto: ``<name>_pb2.py`` and ``<name>_pb2.pyi`` (protoc), ``<name>_pb2_grpc.py`` (grpcio-tools)
and ``<name>_pb2_grpc.pyi`` (mypy-protobuf's protoc-gen-mypy_grpc, so servicers and stubs are
typed for mypy --strict callers; servicer methods are concrete, as at runtime). The output depends on the pinned grpcio-tools and mypy-protobuf.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto" / "observer" / "api" / "v1"
OUT_ROOT = REPO / "observer" / "api" / "v1"
PY_PACKAGE = "observer.api.v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")

PACKAGE_DOC = (
    '"""Generated from proto/observer/api/v1{sub} by scripts/gen_proto.py. Do not edit."""\n'
)


def proto_files() -> list[Path]:
    """Every .proto under the proto root, relative to it, sorted."""
    return sorted(p.relative_to(PROTO_ROOT) for p in PROTO_ROOT.rglob("*.proto"))


def proto_dirs(protos: list[Path]) -> list[str]:
    """The top-level directories holding protos: flow, observer, peer, relay, hubblectl."""
    return sorted({p.parts[0] for p in protos})


def _import_pattern(dirs: list[str]) -> re.Pattern[str]:
    names = "|".join(re.escape(d) for d in dirs)
    # `from flow import flow_pb2 as x`, `from flow.flow_pb2 import *`, `from x import y_pb2_grpc`
    return re.compile(
        rf"^(?P<indent>[ \t]*)from (?P<dir>{names})(?P<mod>\.\w+_pb2(?:_grpc)?)? import (?P<rest>.*)$",
        re.MULTILINE,
    )


def rewrite_imports(text: str, dirs: list[str]) -> str:
    """Point generated imports of sibling protos at the ``observer.api.v1`` package."""
    pattern = _import_pattern(dirs)

    def repl(m: re.Match[str]) -> str:
        if m.group("mod") is None and not re.match(r"\w+_pb2(?:_grpc)?\b", m.group("rest")):
            return m.group(0)
        return f"{m.group('indent')}from {PY_PACKAGE}.{m.group('dir')}{m.group('mod') or ''} import {m.group('rest')}"

    text = pattern.sub(repl, text)
    # The module name recorded on generated classes (their __module__).
    names = "|".join(re.escape(d) for d in dirs)
    return re.sub(
        rf"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')((?:{names})\.\w+_pb2)(')",
        rf"\g<1>{PY_PACKAGE}.\g<2>\g<3>",
        text,
    )


def mypy_grpc_plugin() -> str:
    """protoc-gen-mypy_grpc from the running interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    found = str(beside) if beside.exists() else shutil.which("protoc-gen-mypy_grpc")
    if found is None:
        sys.exit("gen_proto: protoc-gen-mypy_grpc not found (pip install mypy-protobuf)")
    return found


def run_protoc(out: Path, protos: list[Path]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy_grpc={mypy_grpc_plugin()}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        # servicer methods not abstract: like the runtime base class, an rpc a servicer does
        # not override answers UNIMPLEMENTED (Hubble's agent does so for GetNodes)
        "--mypy_grpc_opt=generate_concrete_servicer_stubs,quiet",
        f"--mypy_grpc_out={out}",
        *[str(p) for p in protos],
    ]
    res = subprocess.run(cmd, cwd=PROTO_ROOT, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"gen_proto: protoc failed ({res.returncode}):\n{res.stdout}{res.stderr}")


def generate(out: Path) -> list[Path]:
    """Generate every module into ``out`` (laid out like observer/api/v1); return the relative paths."""
    protos = proto_files()
    if not protos:
        sys.exit(f"gen_proto: no .proto files under {PROTO_ROOT}")
    dirs = proto_dirs(protos)
    run_protoc(out, protos)
    written: list[Path] = []
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name.endswith(GENERATED_SUFFIXES):
            path.write_text(rewrite_imports(path.read_text(), dirs))
            written.append(path.relative_to(out))
    (out / "__init__.py").write_text(PACKAGE_DOC.format(sub=""))
    written.append(Path("__init__.py"))
    for d in dirs:
        (out / d / "__init__.py").write_text(PACKAGE_DOC.format(sub=f"/{d}"))
        written.append(Path(d) / "__init__.py")
    return sorted(written)


def existing(root: Path) -> list[Path]:
    """Generated-looking files currently under observer/api/v1."""
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and (p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py")
    )


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def differences(fresh: Path, files: list[Path], target: Path) -> list[str]:
    problems = []
    for rel in files:
        there = target / rel
        if not there.exists():
            problems.append(f"missing: {_shown(there)}")
        elif not filecmp.cmp(fresh / rel, there, shallow=False):
            problems.append(f"differs: {_shown(there)}")
    for rel in sorted(set(existing(target)) - set(files)):
        problems.append(f"stale:   {_shown(target / rel)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--check", action="store_true", help="verify the checked-in modules are current"
    )
    ap.add_argument("--target", type=Path, default=OUT_ROOT, help="default: observer/api/v1")
    args = ap.parse_args(argv)
    target: Path = args.target.resolve()
    with tempfile.TemporaryDirectory(prefix="gen_proto.") as tmp:
        fresh = Path(tmp)
        files = generate(fresh)
        problems = differences(fresh, files, target)
        if args.check:
            if problems:
                print(
                    "gen_proto: generated code is out of date; run scripts/gen_proto.py",
                    file=sys.stderr,
                )
                for p in problems:
                    print(f"  {p}", file=sys.stderr)
                return 1
            print(f"gen_proto: {len(files)} files up to date")
            return 0
        for rel in sorted(set(existing(target)) - set(files)):
            (target / rel).unlink()
        for rel in files:
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists() or not filecmp.cmp(fresh / rel, dest, shallow=False):
                shutil.copyfile(fresh / rel, dest)
        print(f"gen_proto: {len(problems)} changes under {_shown(target)} ({len(files)} files)")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
