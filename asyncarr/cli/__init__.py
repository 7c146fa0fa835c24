"""The ``asyncarr`` command line (layer L6)."""

from asyncarr.cli._main import main

__all__ = ["main"]
