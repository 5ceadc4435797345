"""Test tiers. Run inside the environment scripts/setup.sh prepares (`nox --no-venv`)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "unit", "integration", "privileged"]


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff and mypy strict over the packages."""
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session(venv_backend="none")
def unit(session: nox.Session) -> None:
    """Pure code: parsers, filters, printers, policy model. No root needed."""
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session(venv_backend="none")
def integration(session: nox.Session) -> None:
    """A real gRPC server and CLI in processes, without BPF."""
    session.run("pytest", "tests/integration", *session.posargs)


@nox.session(venv_backend="none")
def privileged(session: nox.Session) -> None:
    """Real BPF programs on real veths in real network namespaces (root)."""
    session.run("pytest", "tests/privileged", *session.posargs)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Every benchmark; prints a table and writes bench/results.json."""
    session.run("python", "-m", "bench", *session.posargs)
