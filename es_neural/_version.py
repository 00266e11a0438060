"""The package version, in a leaf module: modules inside the package import it from here, never
from the package ``__init__`` (which sits above them)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
