"""The native batch kernel: whole batches of local or in-memory chunks in one call.

One call reads (or writes) a batch of chunks with the GIL released once, spread over
native threads: positional reads of whole chunk files and of shard byte ranges (or
in-memory buffers), bounded decoding (zstd, blosc, numcodecs lz4, gzip, zlib, raw
``bytes``), byte-order swaps and ``transpose`` / F-order layouts, and copies into
strided regions of the output; writes gather each chunk from the value, pad edge
chunks with the fill value, encode, and put each file in place atomically with
:class:`~asyncarr.stores.LocalStore`'s rules. Reads are bit for bit the Python path's;
encoded chunks decode to the same values (byte for byte where the linked library
version is the Python codec's: see ``docs/architecture.md``).

It is a compiled extension (``asyncarr.kernel._ckernel``, C, linking the system's
libzstd, libblosc, liblz4 and zlib), built by the package build where a compiler and
those headers are present and left out otherwise: then :func:`kernel_available` is
false and callers take the pure-Python path. ``ExecutorConfig.kernel`` or the
``ASYNCARR_KERNEL`` environment variable (``auto`` / ``on`` / ``off``) decides whether
it is used (:func:`kernel_enabled`).

Using it, once per array and then once per batch::

    chain = chain_for(pipeline.codecs, pipeline.spec)   # KernelChain, or Refused(reason)
    files = LocalFiles.of(local_store)                  # once per store
    read_chunks(chain, out, [(key, chunk_sel, out_sel), ...], files=files, workers=2)
    read_chunks(chain, out, [((shard_key, offset, length), chunk_sel, out_sel), ...],
                files=files)
    read_chunks(chain, out, [(memory_bytes_or_None, chunk_sel, out_sel), ...],
                labels=keys)
    write_chunks(chain, value, [(key, value_sel), ...], files=files, workers=2)
    encode_chunks(chain, value, [value_sel, ...]) -> [bytes | None, ...]

Selections are tuples of one slice per axis (any steps), as the core's slice plans
yield them (a plan's chunk tuples ``(key, chunk_sel, out_sel, complete, whole)`` can be
passed as read items as they are: fields past the third are ignored). Each item's outcome comes back; failures are raised as the asyncarr
error the Python path raises for that fault (:class:`~asyncarr.errors.CodecError`,
:class:`~asyncarr.errors.TruncatedReadError`, :class:`~asyncarr.errors.InvalidKeyError`,
...), naming the key, once the whole batch is done.
"""

from asyncarr.kernel._batch import (
    LocalFiles,
    ReadItem,
    ReadOutcome,
    WriteItem,
    WriteOutcome,
    encode_chunks,
    read_chunks,
    write_chunks,
)
from asyncarr.kernel._chain import KernelChain, Refused, chain_for
from asyncarr.kernel._loader import (
    kernel_available,
    kernel_enabled,
    kernel_unavailable_reason,
    kernel_versions,
)

__all__ = [
    "KernelChain",
    "LocalFiles",
    "ReadItem",
    "ReadOutcome",
    "Refused",
    "WriteItem",
    "WriteOutcome",
    "chain_for",
    "encode_chunks",
    "kernel_available",
    "kernel_enabled",
    "kernel_unavailable_reason",
    "kernel_versions",
    "read_chunks",
    "write_chunks",
]
