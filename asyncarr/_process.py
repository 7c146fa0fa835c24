"""Which process this is: a token that tells this process from every other one.

A pickle records the token of the process that made it; loading it compares tokens to
know whether it is back where it came from (a memory store then shares its data, a sync
handle leaves the event-loop thread as it is) or in another process (a worker). Unlike a
pid, a token is never reused, on this machine or another; a forked child gets a new one.
"""

from __future__ import annotations

import os
import secrets

__all__ = ["process_token"]

_token = secrets.token_hex(8)


def process_token() -> str:
    """This process's token (a new one after ``fork``)."""
    return _token


def _new_token() -> None:
    global _token
    _token = secrets.token_hex(8)


os.register_at_fork(after_in_child=_new_token)
