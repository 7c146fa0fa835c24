"""Side-by-side benchmarks: asyncarr against zarr-python, zarrs and tensorstore.

Run ``python -m bench`` (``make bench``) for the full suite or
``python -m bench --quick`` (``make bench-quick``) for a short subset. Every
tool reads and writes the same arrays, generated once with a fixed seed; the
tools are interleaved within each repetition, and the report gives medians
with min-max, the ratio asyncarr / each peer, and the hardware limit (codec
work on all cores, raw file reads, raw S3 GETs). Results go to
``bench/results/results.json`` and ``bench/results/chart.png``.
"""
