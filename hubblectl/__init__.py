"""hubblectl command-line client."""

from observer import __version__

__all__ = ["__version__"]
