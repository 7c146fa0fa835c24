"""The report: the table on stdout, the target checks, JSON and a PNG chart."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench._data import WORKLOADS
from bench._runner import Result

__all__ = ["Target", "check_targets", "print_table", "write_chart", "write_json"]

LOCAL_PEERS = ("zarr", "zarr-tuned", "zarrs", "tensorstore")


@dataclass
class Target:
    """One target line: what was compared, the ratio reached and the ratio wanted."""

    name: str
    ratio: float | None
    want: float
    detail: str
    at_most: bool = False
    """The ratio must be at most ``want`` (memory) rather than at least."""

    @property
    def status(self) -> str:
        if self.ratio is None or math.isnan(self.ratio):
            return "n/a"
        ok = self.ratio <= self.want if self.at_most else self.ratio >= self.want
        return "PASS" if ok else "MISS"


def _speedup(a: Result, b: Result) -> float:
    """How much better asyncarr (``a``) is than ``b`` (>1 = asyncarr better)."""
    if not a.values or not b.values:
        return float("nan")
    return a.median / b.median if a.higher_is_better else b.median / a.median


def _find(results: list[Result], wl: str, op: str, tool: str) -> Result | None:
    for r in results:
        if r.workload == wl and r.op == op and r.tool == tool and r.values:
            return r
    return None


def _limit_for(results: list[Result], wl: str, op: str) -> Result | None:
    """The codec limit of ``wl``/``op`` (reads: decode, writes: encode)."""
    return _find(results, wl, op, "limit")


def print_table(results: list[Result], out: Callable[[str], None] = print) -> None:
    """Workload, tool, median [min–max], ratio asyncarr/tool; limits last in each group."""
    out("")
    header = (
        f"{'workload':<18} {'op':<6} {'tool':<44} {'median':>9} {'[min–max]':<19} "
        f"{'asyncarr/tool':>13}  reps  unit/note"
    )
    out(header)
    out("-" * len(header))
    groups = list(dict.fromkeys((r.workload, r.op) for r in results))
    for wl, op in groups:
        rows = [r for r in results if r.workload == wl and r.op == op]
        rows.sort(key=lambda r: r.limit)
        ours = _find(results, wl, op, "asyncarr")
        for i, r in enumerate(rows):
            head = f"{wl:<18} {op:<6}" if i == 0 else " " * 25
            if r.error and not r.values:
                out(
                    f"{head} {r.label[:44]:<44} {'—':>9} {'':<19} {'':>13}  {0:>4}  ERROR {r.error}"
                )
                continue
            rng = f"[{r.lo:.1f}–{r.hi:.1f}]"
            ratio = "" if r.tool == "asyncarr" or ours is None else f"{_speedup(ours, r):.2f}×"
            note = "; ".join(filter(None, [r.note, r.error]))
            out(
                f"{head} {r.label[:44]:<44} {r.median:>9.1f} {rng:<19} {ratio:>13}  "
                f"{len(r.values):>4}  {r.unit}{'  ' + note if note else ''}"
            )
    out("")
    out(
        "asyncarr/tool > 1: asyncarr is faster (MB/s ratio; for ms/chunk the inverse latency ratio)."
    )
    out("Limits: 'limit' = numcodecs decode (read) / encode (write) of every chunk on all cores;")
    out("raw GETs = aiobotocore GETs of every chunk object, same concurrency, no decoding.")
    if any(r.op == "ingest" for r in results):
        out("s3-ingest: raw PUTs = the dataset's stored objects PUT from memory, same")
        out("concurrency; cpu rows = the bench process's CPU per MiB uploaded (lower is better).")


def check_targets(results: list[Result], rss: list[dict[str, Any]]) -> list[Target]:
    """Every benchmark target that this run has data for."""
    out: list[Target] = []
    workloads = sorted({r.workload for r in results}, key=list(WORKLOADS).index)
    for wl_name in workloads:
        wl = WORKLOADS[wl_name]
        if wl.store in ("local", "memory"):
            for op in ("read", "write"):
                ours = _find(results, wl_name, op, "asyncarr")
                if ours is None:
                    continue
                peers = [p for t in LOCAL_PEERS if (p := _find(results, wl_name, op, t))]
                if peers:
                    best = max(peers, key=lambda p: p.median)
                    out.append(
                        Target(
                            f"{wl_name} {op} ≥ 1.0× best peer",
                            _speedup(ours, best),
                            1.0,
                            f"best peer {best.label} {best.median:.1f} MB/s, asyncarr {ours.median:.1f}",
                        )
                    )
                zd = _find(results, wl_name, op, "zarr")
                if zd is not None:
                    out.append(
                        Target(
                            f"{wl_name} {op} ≥ 2× zarr-python default",
                            _speedup(ours, zd),
                            2.0,
                            f"zarr-python {zd.median:.1f} MB/s",
                        )
                    )
                lim = _limit_for(results, wl_name, op)
                if lim is not None:
                    out.append(
                        Target(
                            f"{wl_name} {op} ≥ 0.8× limit",
                            _speedup(ours, lim),
                            0.8,
                            f"{lim.label.strip()} {lim.median:.1f} MB/s",
                        )
                    )
            ours = _find(results, wl_name, "random", "asyncarr")
            ts = _find(results, wl_name, "random", "tensorstore")
            if ours is not None and ts is not None:
                out.append(
                    Target(
                        f"{wl_name} random chunk latency ≤ tensorstore",
                        _speedup(ours, ts),
                        1.0,
                        f"asyncarr {ours.median:.2f} ms, tensorstore {ts.median:.2f} ms",
                    )
                )
        elif "ingest" in wl.ops:
            out.extend(_ingest_targets(results, wl_name))
        elif wl.store == "layered":
            out += _layered_targets(results, wl_name)
        elif wl.store == "s3" and wl.latency_ms > 0:
            ours = _find(results, wl_name, "read", "asyncarr")
            if ours is None:
                continue
            ts = _find(results, wl_name, "read", "tensorstore")
            raw = _find(results, wl_name, "read", "raw-get")
            if ts is not None:
                out.append(
                    Target(
                        f"{wl_name} read ≥ 1.0× tensorstore",
                        _speedup(ours, ts),
                        1.0,
                        f"tensorstore {ts.median:.1f} MB/s, asyncarr {ours.median:.1f}",
                    )
                )
            if raw is not None:
                out.append(
                    Target(
                        f"{wl_name} read ≥ 0.9× raw GETs",
                        _speedup(ours, raw),
                        0.9,
                        f"{raw.label} {raw.median:.1f} MB/s",
                    )
                )
    for doc in rss:
        if doc.get("tool") == "asyncarr" and "ratio" in doc:
            out.append(
                Target(
                    f"peak memory of a full read of {doc['dataset']} ≤ 1.3× array size",
                    doc["ratio"],
                    1.3,
                    f"{doc['delta'] / 1e6:.0f} MB more for a {doc['nbytes'] / 1e6:.0f} MB array",
                    at_most=True,
                )
            )
    return out


INGEST_PEERS = ("tensorstore", "zarr-obstore")


def _ingest_targets(results: list[Result], wl: str) -> list[Target]:
    """s3-ingest: asyncarr's copy against the best peer and raw obstore PUTs of the same
    objects; its transport's CPU per MiB PUT against obstore's."""
    out: list[Target] = []
    ours = _find(results, wl, "ingest", "asyncarr")
    raw = _find(results, wl, "ingest", "raw-put-obstore")
    if ours is not None:
        peers = [p for t in INGEST_PEERS if (p := _find(results, wl, "ingest", t))]
        if peers:
            best = max(peers, key=lambda p: p.median)
            detail = f"best peer {best.label} {best.median:.1f} MB/s, asyncarr {ours.median:.1f}"
            out.append(Target(f"{wl} ≥ 1.0× best peer", _speedup(ours, best), 1.0, detail))
        if raw is not None:
            detail = f"{raw.label} {raw.median:.1f} MB/s"
            out.append(Target(f"{wl} ≥ 0.9× raw obstore PUTs", _speedup(ours, raw), 0.9, detail))
    cpu = _find(results, wl, "cpu", "raw-put-asyncarr")
    cpu_obstore = _find(results, wl, "cpu", "raw-put-obstore")
    if cpu is not None and cpu_obstore is not None:
        detail = f"asyncarr {cpu.median:.2f}, obstore {cpu_obstore.median:.2f} ms CPU per MiB PUT"
        out.append(
            Target(f"{wl} CPU per MiB PUT ≤ obstore", _speedup(cpu, cpu_obstore), 1.0, detail)
        )
    return out


def _layered_targets(results: list[Result], wl: str) -> list[Target]:
    out: list[Target] = []
    plain = _find(results, wl, "random", "asyncarr")
    for n in (1, 10):
        lay = _find(results, wl, "random", f"layered-{n}")
        if plain is not None and lay is not None and lay.values:
            out.append(
                Target(
                    f"{wl}: random chunk latency, {n} layer(s) ≤ 1.2× plain store",
                    lay.median / plain.median,
                    1.2,
                    f"{lay.median:.3f} ms vs {plain.median:.3f} ms",
                    at_most=True,
                )
            )
        s3_plain = _find(results, wl, "s3-requests", "asyncarr")
        s3_lay = _find(results, wl, "s3-requests", f"layered-{n}")
        if s3_plain is not None and s3_lay is not None and s3_lay.values and s3_plain.values:
            out.append(
                Target(
                    f"{wl}: S3 requests per read, {n} layer(s) ≤ plain + 1",
                    s3_lay.median / (s3_plain.median + 1),
                    1.0,
                    f"{s3_lay.median:.2f} vs {s3_plain.median:.2f} requests per read",
                    at_most=True,
                )
            )
    commit = _find(results, wl, "commit", "commit-1pct")
    if commit is not None and commit.values:
        out.append(
            Target(
                f"{wl}: a 1% commit uploads ≤ 1.2× the changed chunks",
                commit.median / 100.0,
                1.2,
                commit.note,
                at_most=True,
            )
        )
    return out


def print_targets(targets: list[Target], out: Callable[[str], None] = print) -> None:
    out("")
    out("Targets (ratios from this run):")
    for t in targets:
        ratio = "—" if t.ratio is None or math.isnan(t.ratio) else f"{t.ratio:.2f}×"
        want = f"{'≤' if t.at_most else '≥'} {t.want:g}×"
        out(f"  {t.status:<4}  {t.name:<58} {ratio:>7}  (want {want}; {t.detail})")
    passed = sum(t.status == "PASS" for t in targets)
    out(f"  {passed}/{len(targets)} targets met")


def print_rss(rss: list[dict[str, Any]], out: Callable[[str], None] = print) -> None:
    if not rss:
        return
    out("")
    out(
        "Peak memory increase of one full read (fresh subprocess per tool; PSS of the "
        "process tree, sum of the processes' RSS in brackets):"
    )
    for d in rss:
        if "error" in d:
            out(f"  {d['tool']:<12} {d['dataset']:<24} ERROR {d['error']}")
            continue
        out(
            f"  {d['tool']:<12} {d['dataset']:<24} {d['delta'] / 1e6:8.1f} MB for a "
            f"{d['nbytes'] / 1e6:.0f} MB array = {d['ratio']:.2f}×"
            + (f"  (RSS sum {d['rss_sum_ratio']:.2f}×)" if "rss_sum_ratio" in d else "")
        )


def write_json(
    path: Path,
    *,
    results: list[Result],
    targets: list[Target],
    rss: list[dict[str, Any]],
    meta: dict[str, Any],
) -> None:
    doc = {
        "meta": {"python": platform.python_version(), "machine": platform.machine(), **meta},
        "results": [r.to_json() for r in results],
        "targets": [{**asdict(t), "status": t.status} for t in targets],
        "rss": rss,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str))


_COLORS = {
    "asyncarr": "#d62728",
    "zarr": "#7f7f7f",
    "zarr-tuned": "#bcbd22",
    "zarrs": "#1f77b4",
    "tensorstore": "#2ca02c",
    "raw-get": "#9467bd",
}


def write_chart(path: Path, results: list[Result]) -> None:
    """Grouped bars per workload: full reads, writes (MB/s) and random-chunk latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [
        op for op in ("read", "write", "random") if any(r.op == op and r.values for r in results)
    ]
    fig, axes = plt.subplots(len(ops), 1, figsize=(13, 4.2 * len(ops)), squeeze=False)
    for ax, op in zip(axes[:, 0], ops):
        rows = [r for r in results if r.op == op and r.values and not r.tool.startswith("limit")]
        wls = list(dict.fromkeys(r.workload for r in rows))
        tools = list(dict.fromkeys(r.tool for r in rows))
        width = 0.8 / max(1, len(tools))
        for ti, tool in enumerate(tools):
            xs, ys, lo, hi = [], [], [], []
            for wi, wl in enumerate(wls):
                r = _find(rows, wl, op, tool)
                if r is None:
                    continue
                xs.append(wi + (ti - (len(tools) - 1) / 2) * width)
                ys.append(r.median)
                lo.append(r.median - r.lo)
                hi.append(r.hi - r.median)
            label = next(r.label for r in rows if r.tool == tool)
            ax.bar(xs, ys, width, yerr=[lo, hi], label=label, color=_COLORS.get(tool), capsize=2)
        for wi, wl in enumerate(wls):
            lim = _limit_for(results, wl, op)
            if lim is not None:
                ax.hlines(lim.median, wi - 0.45, wi + 0.45, colors="black", linestyles="dashed")
        ax.set_xticks(range(len(wls)), wls)
        unit = "ms per chunk (lower is better)" if op == "random" else "MB/s uncompressed"
        title = {
            "read": "full read",
            "write": "full write",
            "random": "200 random single-chunk reads",
        }[op]
        ax.set_title(f"{title} (dashed: limit)" if op != "random" else title)
        ax.set_ylabel(unit)
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
