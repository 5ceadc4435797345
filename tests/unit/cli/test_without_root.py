"""Commands that need root say so in one line, without a traceback.

The privileged tests run as root (and the interpreter may live under /root, which another
user cannot read), so the non-root paths are driven here by making the process look
unprivileged at the one place the code asks.
"""

from __future__ import annotations

import os

import pytest

from hubblectl.cli.main import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0), capsys.readouterr().err


def test_agent_refuses_to_start_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, err = _run(
        ["agent", "--state-dir", str(tmp_path), "--socket", f"{tmp_path}/s.sock"], capsys
    )
    assert code != 0
    assert "must run as root" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_endpoint_exec_refuses_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, err = _run(["endpoint", "exec", "default/x", "--", "true"], capsys)
    assert code != 0
    assert "needs root" in err and "Traceback" not in err


def test_unreadable_socket_says_permission_denied(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    sock = os.path.join(tmp_path, "agent.sock")
    open(sock, "w").close()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    code, err = _run(["endpoint", "list", "--server", f"unix://{sock}"], capsys)
    assert code != 0
    assert "permission denied" in err and "Traceback" not in err, err
