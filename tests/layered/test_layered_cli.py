"""``asyncarr layers|compact|gc|pack`` (run in-process: ``asyncarr.cli.main``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import asyncarr.sync as az
from asyncarr.cli import main
from asyncarr.cli._layered import parse_duration


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_layers_compact_gc_and_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = str(tmp_path / "ds")
    with az.create_array(f"layered::{ds}", path="t", shape=(8, 8), chunks=(4, 4), dtype="i4") as a:
        for i in range(4):
            a[i : i + 1] = i + 1
    code, out, _ = run(capsys, "layers", ds, "--json")
    rows = json.loads(out)
    assert code == 0 and [r["generation"] for r in rows] == [5, 4, 3, 2, 1]
    assert rows[-1]["message"] == "create array /t" and rows[0]["layers"] == 5
    assert {"generation", "timestamp", "message", "layers"} <= set(rows[0])
    code, out, _ = run(capsys, "layers", f"layered::{ds}")
    assert out.splitlines()[0].split()[0] == "5"
    assert run(capsys, "compact", ds)[1].startswith("generation 6: 1 layer (1 written)")
    code, out, _ = run(capsys, "gc", ds, "--keep", "2", "--older-than", "0", "--grace", "0s")
    assert code == 0 and "kept generations 5..6; deleted 4 manifests" in out
    # a snapshot gc removed: a clear error, no traceback
    code, _, err = run(capsys, "info", f"layered::{ds}", "-o", "at=2")
    assert code == 1
    assert "generation 2 was removed by garbage collection; the container keeps generations 5..6" in err
    # the pack: one object, read in place
    pack = tmp_path / "out" / "ds.pack"
    code, out, _ = run(capsys, "pack", f"layered::{ds}", str(pack), "--message", "v1")
    assert code == 0 and pack.is_file()
    with az.open_array(f"layered::{pack}", path="t") as packed:
        np.testing.assert_array_equal(packed[:4, 0], [1, 2, 3, 4])
    code, out, _ = run(capsys, "layers", str(pack), "--json")
    assert [(r["kind"], r["message"]) for r in json.loads(out)] == [("pack", "v1")]


def test_errors_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "layers", str(tmp_path / "empty"))
    assert code == 0 and "empty container" in out
    with pytest.raises(SystemExit):
        main(["gc", str(tmp_path), "--older-than", "soon"])
    assert "invalid duration 'soon'" in capsys.readouterr().err
    code, _, err = run(capsys, "compact", str(tmp_path / "x"), "-o", "refresh_interval=-1")
    assert code == 1 and "refresh_interval must be >= 0" in err
    assert parse_duration("7d") == 7 * 86400 and parse_duration("1.5h") == 5400
    assert parse_duration("30") == 30 and parse_duration("2w") == 14 * 86400
