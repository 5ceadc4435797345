"""Binding gRPC servers to the addresses users type (`:4244` means every address)."""

from __future__ import annotations

import grpc

from observer.errors import ConfigError


def listen_target(address: str) -> str:
    """``:4244`` -> ``[::]:4244`` (every address), others unchanged."""
    address = address.strip()
    if address.startswith(":"):
        return "[::]" + address
    return address


def announce_address(address: str) -> str:
    """The address peers should dial for a listen address (``:4244`` -> ``localhost:4244``)."""
    address = address.strip()
    if address.startswith(":"):
        return "localhost" + address
    if address.startswith(("0.0.0.0:", "[::]:")):
        return "localhost:" + address.rsplit(":", 1)[1]
    return address


def bind(
    server: grpc.aio.Server, address: str, flag: str, creds: grpc.ServerCredentials | None = None
) -> int:
    """Add a listening port; a failure is a ConfigError naming the flag and the address."""
    target = listen_target(address)
    try:
        port = server.add_secure_port(target, creds) if creds is not None else server.add_insecure_port(target)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"{flag}: cannot listen on {address} (in use, or not an address of this host)")
    return port
