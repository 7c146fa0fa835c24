"""The ``asyncarr`` command line, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import asyncarr.sync as az


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncarr", *args], capture_output=True, text=True, timeout=120
    )


def test_info_tree_and_copy(tmp_path: Path) -> None:
    root = tmp_path / "g.zarr"
    g = az.create_group(str(root))
    arr = g.create_array(
        "temp", shape=(100, 80), chunks=(10, 10), dtype="f4", compressor="zstd", shards=(50, 40)
    )
    arr[:] = np.linspace(0, 1, 8000, dtype="f4").reshape(100, 80)

    info = _cli("info", str(root / "temp"))
    assert info.returncode == 0, info.stderr
    for expected in (
        "Zarr format",
        "(100, 80)",
        "float32",
        "(10, 10)",
        "Shard shape",
        "zstd",
        "Compression ratio",
        "Shards initialized",
        "4/4",
    ):
        assert expected in info.stdout, (expected, info.stdout)
    as_json = json.loads(_cli("info", "--json", str(root / "temp")).stdout)
    assert as_json["shape"] == [100, 80] and as_json["nchunks_initialized"] == 4

    tree = _cli("tree", str(root))
    assert tree.returncode == 0 and "temp (100, 80) float32" in tree.stdout

    dest = tmp_path / "copy.zarr"
    copied = _cli(
        "copy", str(root / "temp"), str(dest), "--zarr-format", "2", "--compressor", "blosc"
    )
    assert copied.returncode == 0, copied.stderr
    back = az.open_array(str(dest))
    assert back.zarr_format == 2
    np.testing.assert_array_equal(back[:], arr[:])


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    missing = _cli("info", str(tmp_path / "nothing-here"))
    assert missing.returncode == 1
    assert (
        missing.stderr.startswith("asyncarr: error:") and "no Zarr array or group" in missing.stderr
    )
    assert "Traceback" not in missing.stderr


def test_demo_runs(tmp_path: Path) -> None:
    out = _cli("demo", "--path", str(tmp_path / "demo"), "--size", "512")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("verified") == 3


def test_copy_onto_itself_fails_cleanly_and_keeps_the_data(tmp_path: Path) -> None:
    root = tmp_path / "self.zarr"
    arr = az.create_array(str(root), shape=(4,), chunks=(2,), dtype="i4")
    arr[:] = [1, 2, 3, 4]
    done = _cli("copy", str(root), str(root) + "/", "--overwrite")
    assert done.returncode == 1
    assert "asyncarr: error: cannot copy" in done.stderr
    assert "Traceback" not in done.stderr
    np.testing.assert_array_equal(az.open_array(str(root))[:], [1, 2, 3, 4])


def test_demo_with_bad_arguments_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    for args in (["--size", "-5"], ["--size", "0"], ["--path", str(tmp_path / "a-file")]):
        done = _cli("demo", "--path", str(tmp_path / "d"), *args)
        assert done.returncode == 1, args
        assert done.stderr.startswith("asyncarr: error: "), done.stderr
        assert "Traceback" not in done.stderr


def test_info_shows_the_fill_value_as_a_plain_number(tmp_path: Path) -> None:
    az.create_array(str(tmp_path / "a.zarr"), shape=(4,), dtype="u1", fill_value=7)
    text = _cli("info", str(tmp_path / "a.zarr")).stdout
    assert "Fill value         : 7" in text and "np." not in text
    doc = json.loads(_cli("info", "--json", str(tmp_path / "a.zarr")).stdout)
    assert doc["fill_value"] == 7


def test_info_json_is_strict_json_even_for_nan_and_infinity(tmp_path: Path) -> None:
    url = str(tmp_path / "nan.zarr")
    az.create_array(
        url, shape=(4,), dtype="f4", fill_value=float("nan"), attributes={"lo": float("-inf")}
    )
    out = _cli("info", url, "--json")
    assert out.returncode == 0, out.stderr

    def refuse(token: str) -> None:
        raise AssertionError(f"bare {token} in --json output")

    document = json.loads(out.stdout, parse_constant=refuse)
    assert document["fill_value"] == "NaN"


def test_version_and_messages_in_the_command_lines_terms(tmp_path: Path) -> None:
    """--version; refusals name the flags (--overwrite, -o) rather than Python keywords."""
    import asyncarr

    version = _cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"asyncarr {asyncarr.__version__}"
    for name in ("a", "b"):
        az.create_array(str(tmp_path / name), shape=(3,), dtype="u1").close()
    copy = _cli("copy", str(tmp_path / "a"), str(tmp_path / "b"))
    assert copy.returncode == 1
    assert "--overwrite" in copy.stderr and "overwrite=True" not in copy.stderr
    assert str(tmp_path / "b") in copy.stderr
    unknown = _cli("info", "s3://bucket-name/x", "-o", "nope=1")
    assert unknown.returncode == 1
    assert "-o/--storage-option" in unknown.stderr and "storage_options" not in unknown.stderr
    mistyped = _cli("info", "s3:/bucket-name/x")
    assert "did you mean s3://bucket-name/x?" in mistyped.stderr
