"""What the commands share: storage options from the command line, strict JSON output."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["json_text", "storage_options"]


def storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a dict (each value parsed as JSON when it is JSON)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"asyncarr: --storage-option needs KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats spelt as ``zarr.json`` spells them ("NaN",
    "Infinity", "-Infinity"): strict JSON parsers refuse bare NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def json_text(document: Any) -> str:
    """``document`` as strict JSON (what ``--json`` prints)."""
    plain = json.loads(json.dumps(document, default=str))  # numpy scalars etc. made plain
    return json.dumps(_json_safe(plain), indent=2, allow_nan=False)
