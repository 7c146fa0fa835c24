"""A new user's first minutes: ``import asyncarr`` says nothing, and the README's quick
start runs as written, and again (a reader who runs it twice, or after changing a line,
must not meet an error about the array the first run made)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_start_runs_twice_in_a_row(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) >= 2  # the async and the blocking halves
    script = tmp_path / "quick_start.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for run in (1, 2):
        done = subprocess.run(
            [sys.executable, "-W", "error", str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"run {run}:\n{done.stderr}"
        assert done.stderr == ""


def test_import_warns_nothing() -> None:
    """numcodecs deprecates the crc32c package for its checksum codecs and asks for
    google-crc32c: asyncarr depends on it, so the import is silent (no warning filter)."""
    requires = importlib.metadata.requires("asyncarr") or []
    assert any(re.match(r"google-crc32c\b", r) for r in requires)
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", "import asyncarr, asyncarr.sync"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
