"""``python -m bench.layered_scale``: how layered containers scale (docs/layered.md).

Measures, on local disk (the container's own costs, not a network's):

- the footer (index) size per key, and the time to parse and check it;
- the manifest size per layer;
- opening a generation of 1..1,000 layers (every footer read and merged) and a random
  read then (one lookup, one range read, whatever the number of layers);
- a commit's time against the number of keys already in the container.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from asyncarr.stores import LayeredStore, LocalStore
from asyncarr.stores._layered._format import LayerBuilder, parse_layer_object


def _median_ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:8.2f} ms"


def footers() -> None:
    print("footer: keys -> stored index bytes, per key, parse+check time")
    for n in (1_000, 10_000, 100_000, 1_000_000):
        builder = LayerBuilder(compression="none")
        for i in range(n):  # chunk-like keys of a 3-d array, 16-byte values
            builder.add(f"var/c/{i // 10000}/{(i // 100) % 100}/{i % 100}", b"x" * 16)
        data = builder.finish()
        index_bytes = len(data) - 16 * n - 64
        times = []
        for _ in range(3):
            start = time.perf_counter()
            parse_layer_object("x", data)
            times.append(time.perf_counter() - start)
        print(
            f"  {n:>9,} keys: {index_bytes:>11,} B ({index_bytes / n:5.1f} B/key), {_median_ms(times)}"
        )


async def layers(root: Path) -> None:
    print("open (read every footer, merge) and random reads vs layers (1,000 keys in all)")
    for n in (1, 10, 100, 1000):
        store = LayeredStore(LocalStore(str(root / f"l{n}")))
        for layer in range(n):
            txn = await store.begin(message=f"layer {layer}")
            for k in range(max(1, 1000 // n)):
                await txn.set(f"k/{layer}/{k}", b"v" * 64)
            await txn.commit()
        manifest = (await store.history())[0]
        size = len(manifest.to_json())
        opens, reads = [], []
        for _ in range(3):
            fresh = LayeredStore(LocalStore(str(root / f"l{n}")))
            start = time.perf_counter()
            await fresh.refresh()
            opens.append(time.perf_counter() - start)
            start = time.perf_counter()
            for layer in range(0, n, max(1, n // 100)):
                await fresh.get(f"k/{layer}/0")
            reads.append((time.perf_counter() - start) / len(range(0, n, max(1, n // 100))))
        print(
            f"  {n:>5} layers: manifest {size:>8,} B ({size / n:5.0f} B/layer), "
            f"open {_median_ms(opens)}, read {_median_ms(reads)}"
        )


async def commits(root: Path) -> None:
    print("a one-key commit vs keys already in the container (one layer of them)")
    for n in (1_000, 100_000, 1_000_000):
        store = LayeredStore(LocalStore(str(root / f"c{n}")), spill_bytes=1 << 30)
        txn = await store.begin(message="fill")
        for i in range(n):
            await txn.set(f"c/{i // 1000}/{i % 1000}", b"")
        await txn.commit()
        times = []
        for i in range(5):
            start = time.perf_counter()
            await store.set(f"one/{i}", b"x")
            times.append(time.perf_counter() - start)
        print(f"  {n:>9,} keys: {_median_ms(times)}")


def main() -> int:
    footers()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(layers(Path(tmp)))
        asyncio.run(commits(Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
