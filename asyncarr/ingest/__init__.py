"""Bulk jobs (layer L6): copying arrays between stores, and the demo job."""

from asyncarr.ingest._copy import CopyReport, copy_array
from asyncarr.ingest._demo import run_demo

__all__ = ["CopyReport", "copy_array", "run_demo"]
