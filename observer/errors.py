"""The agent's error tree. Every error the agent raises on purpose derives from ObserverError.

    ObserverError
    ├── ConfigError          bad configuration or flag value
    ├── BpfError (OSError)   a libbpf / bpf(2) call failed; carries errno and what was attempted
    ├── DatapathError        netns / veth / route / address work failed
    │   ├── EndpointExists
    │   ├── EndpointNotFound
    │   └── AddressExhausted
    ├── LabelError           a label or label selector is malformed
    ├── DecodeError          a ring-buffer record could not be decoded (truncated, unknown type)
    ├── FilterError          a FlowFilter is invalid; names the field
    ├── PolicyError          a policy document is invalid; names file, document and field
    └── StateError           the state directory is unreadable or inconsistent

Foreign errors (errno, grpc, yaml) are translated into these at one seam per package.
"""

from __future__ import annotations


class ObserverError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(ObserverError):
    """A configuration value or flag is invalid."""


class BpfError(ObserverError, OSError):
    """A libbpf or bpf(2) call failed.

    ``str(err)`` reads like ``attach tc ingress on lxc1234: Operation not permitted``.
    """

    def __init__(self, errno_: int, what: str) -> None:
        import os

        OSError.__init__(self, errno_, os.strerror(errno_) if errno_ else "failed")
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}: {self.strerror}"


class DatapathError(ObserverError):
    """Netns, link, address or route work failed."""


class EndpointExists(DatapathError):
    """An endpoint with that namespace/name already exists."""


class EndpointNotFound(DatapathError):
    """No endpoint with that namespace/name or ID."""


class AddressExhausted(DatapathError):
    """The pod address range has no free address left."""


class LabelError(ObserverError):
    """A label or label selector is malformed."""


class DecodeError(ObserverError):
    """A ring-buffer record could not be decoded."""


class FilterError(ObserverError):
    """A flow filter is invalid. ``field`` names the offending FlowFilter field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PolicyError(ObserverError):
    """A policy document is invalid; the message names file, document and field."""


class StateError(ObserverError):
    """The state directory is unreadable or inconsistent."""
