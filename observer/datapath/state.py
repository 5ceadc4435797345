"""The agent's state directory: small JSON documents written atomically.

Layout (default ``/var/lib/hubblectl``)::

    endpoints.json     {"version": 1, "endpoints": [ {...}, ... ]}
    identities.json    {"version": 1, "identities": {"<id>": ["k8s:a=b", ...]}}
    ipam.json          {"version": 1, "ipv4": {...}, "ipv6": {...}}
    endpoint-id.json   {"version": 1, "next": 7}

Every write goes to a temporary file in the same directory, is fsync'ed, renamed over the
old file, and the directory is fsync'ed, so a crash leaves either the old or the new
document, never a torn one. A document that cannot be read or parsed raises StateError
naming the file and the problem; so do the schema checks of the modules that own each file
(through :meth:`StateDir.error`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from observer.errors import StateError

DEFAULT_STATE_DIR = "/var/lib/hubblectl"
STATE_VERSION = 1

ENDPOINTS_FILE = "endpoints.json"
IDENTITIES_FILE = "identities.json"
IPAM_FILE = "ipam.json"
ENDPOINT_ID_FILE = "endpoint-id.json"


class StateDir:
    """One state directory. Holds no cached content: every read goes to disk."""

    __slots__ = ("_path",)

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        return self._path

    def file(self, name: str) -> Path:
        return self._path / name

    def __repr__(self) -> str:
        return f"StateDir({str(self._path)!r})"

    def error(self, name: str, problem: str) -> StateError:
        """A StateError that names the file: ``/var/lib/hubblectl/ipam.json: <problem>``."""
        return StateError(f"{self.file(name)}: {problem}")

    def ensure(self) -> None:
        """Create the directory (mode 0755 when new)."""
        try:
            self._path.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"{self._path}: cannot create state directory: {exc.strerror}"
            ) from exc
        if not self._path.is_dir():
            raise StateError(f"{self._path}: not a directory")

    def read_json(self, name: str) -> dict[str, Any] | None:
        """The document ``name`` as a dict, None when the file does not exist.

        Checks the envelope: a JSON object whose ``version`` is ours.
        """
        path = self.file(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.error(name, f"cannot read: {exc.strerror}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(name, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.error(
                name, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
        if not isinstance(doc, dict):
            raise self.error(name, f"expected a JSON object, found {type(doc).__name__}")
        version = doc.get("version")
        if version != STATE_VERSION:
            raise self.error(name, f"unsupported version {version!r} (expected {STATE_VERSION})")
        return doc

    def write_json(self, name: str, doc: dict[str, Any]) -> None:
        """Replace the document ``name`` atomically; adds the ``version`` key."""
        self.ensure()
        body = {"version": STATE_VERSION, **{k: v for k, v in doc.items() if k != "version"}}
        data = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()
        target = self.file(name)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self._path)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self.error(name, f"cannot write: {exc.strerror}") from exc
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        try:
            dfd = os.open(self._path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)
