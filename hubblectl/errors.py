"""The CLI's error tree.

    HubblectlError
    ├── UsageError       a flag value or flag combination is invalid (names the flags)
    ├── ConnectionError_ the server cannot be reached or answered with an error
    └── InputError       an input file is malformed (names file and line)

The CLI prints ``str(err)`` on one line and exits non-zero; a traceback only with --debug.
"""

from __future__ import annotations


class HubblectlError(Exception):
    """Root of the CLI's errors."""

    exit_code = 1


class UsageError(HubblectlError):
    """A flag value or a combination of flags is invalid."""

    exit_code = 2


class ServerError(HubblectlError):
    """The server is unreachable or answered with an error."""


class InputError(HubblectlError):
    """An input file is malformed."""
