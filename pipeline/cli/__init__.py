"""The command line: one module per command group; the only place that knows flag names."""

from .main import main

__all__ = ["main"]
