"""The native ingest fast path: a C library (native/hbflow.c) loaded with ctypes.

It renders ring-buffer records straight from the mapped ring into the flow JSON lines the
Python path (decode + ``FlowBuilder.build`` + ``orjson.dumps``) gives, byte for byte apart
from the random UUIDs. ``observer.agent.ingest.Ingest`` uses it when ``load()`` finds the
library, and keeps to the Python path otherwise. Build it with ``make -C native``.
"""

from __future__ import annotations

from observer.native._lib import Library, NativeError, library_path, load, load_problem, require
from observer.native.render import Chunk, FlowRenderer, NativeRing

__all__ = [
    "Chunk",
    "FlowRenderer",
    "Library",
    "NativeError",
    "NativeRing",
    "library_path",
    "load",
    "load_problem",
    "require",
]
