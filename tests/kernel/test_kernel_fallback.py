"""Without the compiled kernel (no compiler or codec headers at install time) asyncarr
works as before on its pure-Python path; ``on`` then says why it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asyncarr import kernel as ak
from asyncarr.config import ExecutorConfig, kernel_mode
from asyncarr.errors import ConfigError

WITHOUT_KERNEL = textwrap.dedent(
    """
    import sys
    sys.modules["asyncarr.kernel._ckernel"] = None  # as if it had not been built

    import numpy as np
    import asyncarr.sync as az
    from asyncarr import kernel as ak
    from asyncarr._types import ChunkSpec
    from asyncarr.codecs import BytesCodec
    from asyncarr.errors import ConfigError

    assert not ak.kernel_available()
    assert "not built" in ak.kernel_unavailable_reason()
    assert ak.kernel_versions() == {}
    assert not ak.kernel_enabled("auto") and not ak.kernel_enabled("off")
    refused = ak.chain_for([BytesCodec()], ChunkSpec((4,), np.dtype("f4"), 0))
    assert isinstance(refused, ak.Refused) and "not available" in refused.reason
    try:
        ak.kernel_enabled()  # ASYNCARR_KERNEL=on in this process's environment
    except ConfigError as exc:
        assert "required" in str(exc)
    else:
        raise AssertionError("kernel='on' without a kernel must fail")
    arr = az.create_array(sys.argv[1], shape=(10, 10), chunks=(4, 4), dtype="i4")
    arr[:] = np.arange(100).reshape(10, 10)
    assert (arr[:] == np.arange(100).reshape(10, 10)).all()
    print("ok")
    """
)


def test_asyncarr_works_without_the_kernel(tmp_path: Path) -> None:
    env = {**os.environ, "ASYNCARR_KERNEL": "on"}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_KERNEL, str(tmp_path / "a.zarr")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_kernel_mode_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASYNCARR_KERNEL", raising=False)
    assert kernel_mode() == "auto"
    assert kernel_mode("off") == "off"
    monkeypatch.setenv("ASYNCARR_KERNEL", "off")
    assert kernel_mode() == "off" and not ak.kernel_enabled()
    assert kernel_mode("on") == "on"
    monkeypatch.setenv("ASYNCARR_KERNEL", "sometimes")
    with pytest.raises(ConfigError, match="ASYNCARR_KERNEL"):
        kernel_mode()
    with pytest.raises(ConfigError, match="kernel must be"):
        ExecutorConfig(kernel="fast")  # type: ignore[arg-type]
    assert ExecutorConfig(kernel="off").kernel == "off"
    if ak.kernel_available():
        assert ak.kernel_enabled("on") and ak.kernel_enabled("auto")
        assert set(ak.kernel_versions()) >= {"zstd", "blosc", "lz4", "zlib"}
