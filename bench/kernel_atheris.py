"""Coverage-guided fuzzing of the kernel's decoders with atheris (optional; not in CI).

``python bench/kernel_atheris.py CORPUS_DIR -max_total_time=300`` fuzzes (guided by the
coverage of the Python codecs it is compared with: without clang the C code is not
instrumented), then ``bench/kernel_asan.sh --python bench/kernel_atheris.py CORPUS_DIR
-runs=0`` replays the corpus it grew under AddressSanitizer (whose coverage hooks
displace atheris's, so fuzzing under ASan itself is blind). Needs ``pip install
atheris`` (not a dependency of asyncarr). The first input byte picks a codec chain, the rest is the
encoded chunk; valid chunks of every chain seed the corpus. Every input must come back
from the kernel as decoded values equal to the Python path's, or as a ``CodecError``
where the Python path raises one (the one known exception: see
``tests/kernel/test_kernel_fuzz.py``, ``_older_zstd``). A failure raises, and libFuzzer
saves the input.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-not-found]
import numpy as np

with atheris.instrument_imports(include=["asyncarr.codecs", "asyncarr.core._pipeline"]):
    from asyncarr import kernel as ak
    from asyncarr._types import ChunkSpec
    from asyncarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec, numcodecs_adapter
    from asyncarr.core._pipeline import CodecPipeline
    from asyncarr.errors import CodecError

SPEC = ChunkSpec((24, 20), np.dtype("<f4"), 0.0)
VALUE = np.cumsum(np.random.default_rng(5).integers(-2, 3, (24, 20)), axis=1).astype("<f4")
CHAINS: list[list[Any]] = [
    [],
    [ZstdCodec(level=3, checksum=True)],
    [ZstdCodec(level=3)],
    [BloscCodec(cname="lz4", shuffle="shuffle", typesize=4)],
    [BloscCodec(cname="blosclz", shuffle="bitshuffle", typesize=4)],
    [BloscCodec(cname="zlib", shuffle="noshuffle")],
    [BloscCodec(cname="zstd", shuffle="shuffle", typesize=4)],
    [numcodecs_adapter("lz4", {})],
    [GzipCodec(level=6)],
    [numcodecs_adapter("zlib", {"level": 6})],
]
PIPELINES = [CodecPipeline([BytesCodec(), *codecs], SPEC) for codecs in CHAINS]
KERNEL = [ak.chain_for(p.codecs, p.spec) for p in PIPELINES]
ZSTD_CHAINS, BLOSC_CHAINS = {1, 2}, {3, 4, 5, 6}
OLDER_ZSTD = tuple(int(v) for v in str(ak.kernel_versions()["zstd"]).split(".")[:3]) < (1, 5, 6)


def unchecked_zstd(which: int, frame: bytes) -> bool:
    """zstd without a checksum: a zstd frame without the checksum flag, or a blosc frame
    whose blocks are zstd (blosc has no checksum)."""
    if which in BLOSC_CHAINS:
        return len(frame) > 2 and (frame[2] >> 5) & 7 == 4
    if which in ZSTD_CHAINS:
        return frame[:4] == b"\x28\xb5\x2f\xfd" and (len(frame) < 5 or not frame[4] & 4)
    return False


def one_input(data: bytes) -> None:
    if not data:
        return
    which = data[0] % len(CHAINS)
    frame = data[1:]
    try:
        python: bytes | None = PIPELINES[which].decode(frame).tobytes()
    except CodecError:
        python = None
    chain = KERNEL[which]
    assert isinstance(chain, ak.KernelChain)
    out = np.zeros(SPEC.shape, "<f4")
    outcome = ak.read_chunks(chain, out, [(frame, None, None)], raise_errors=False)
    if OLDER_ZSTD and unchecked_zstd(which, frame):  # any outcome but a crash
        assert not outcome.errors or isinstance(outcome.errors[0], CodecError)
        return
    if outcome.errors:
        assert isinstance(outcome.errors[0], CodecError), outcome.errors
        if python is not None:
            raise AssertionError(f"chain {which}: the kernel refused what Python decodes")
        return
    if python is None:
        raise AssertionError(f"chain {which}: the kernel decoded what Python refuses")
    if out.tobytes() != python:
        raise AssertionError(f"chain {which}: the kernel decoded other values")


def main() -> None:
    seeds = Path(tempfile.mkdtemp(prefix="kernel-atheris-"))
    for i, pipeline in enumerate(PIPELINES):
        (seeds / f"chain{i}").write_bytes(bytes([i]) + pipeline.encode(VALUE))
    atheris.Setup([*sys.argv, str(seeds)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
