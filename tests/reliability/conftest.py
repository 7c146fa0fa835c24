"""Make this directory's helper modules importable by name, whatever pytest's import mode.

``_reliability_helpers``, ``_concurrent_worker`` and ``_crash_zygote`` are imported
by the test files, by spawned writer processes (which inherit ``sys.path``) and
by the crash fork server (run as a script from this directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
