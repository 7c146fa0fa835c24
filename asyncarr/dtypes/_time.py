"""Dates and durations: ``numpy.datetime64`` and ``numpy.timedelta64`` (v2: ``<M8[ns]``,
``>m8[10ms]``, any unit and byte order). Items are 64-bit counts of ``scale_factor``
units; the smallest count, -2**63, is NaT ("not a time"), their default fill value."""

from __future__ import annotations

import datetime
import re
from typing import Any, ClassVar, Literal, Self

import numpy as np

from asyncarr.abc import DataType, ZarrFormat
from asyncarr.dtypes._common import bad_fill, bad_user_fill, is_json_int
from asyncarr.errors import ConfigError, MetadataError

__all__ = ["TIME_UNITS", "TimeDataType"]

TIME_UNITS = (
    "Y", "M", "W", "D", "h", "m", "s", "ms", "us", "μs", "ns", "ps", "fs", "as", "generic",
)  # fmt: skip
MAX_SCALE = 2**31 - 1
NAT = -(2**63)
_NAMES = {"M": "numpy.datetime64", "m": "numpy.timedelta64"}
_KIND_OF = {v: k for k, v in _NAMES.items()}


class TimeDataType(DataType):
    """``numpy.datetime64`` (``kind="M"``) or ``numpy.timedelta64`` (``kind="m"``)."""

    v3_names: ClassVar[tuple[str, ...]] = ("numpy.datetime64", "numpy.timedelta64")

    def __init__(
        self, kind: Literal["M", "m"], unit: str, scale_factor: int = 1, byteorder: str = "="
    ) -> None:
        if kind not in _NAMES:
            raise ConfigError(f"kind must be 'M' (datetime64) or 'm' (timedelta64), got {kind!r}")
        if unit not in TIME_UNITS:
            raise ConfigError(f"time unit must be one of {list(TIME_UNITS)}, got {unit!r}")
        if unit == "μs":
            unit = "us"
        if not is_json_int(scale_factor) or not 1 <= scale_factor <= MAX_SCALE:
            raise ConfigError(
                f"scale_factor must be an integer from 1 to {MAX_SCALE}, got {scale_factor!r}"
            )
        if unit == "generic" and scale_factor != 1:
            raise ConfigError("a generic time unit has no scale_factor")
        self.kind: Literal["M", "m"] = kind
        self.unit = unit
        self.scale_factor = int(scale_factor)
        spelled = "" if unit == "generic" else f"[{scale_factor}{unit}]"
        self._dtype = np.dtype(f"{byteorder}{kind}8{spelled}")

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def name(self) -> str:
        return _NAMES[self.kind]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.unit, self.scale_factor, self._dtype.byteorder))

    def describe(self) -> str:
        scale = "" if self.scale_factor == 1 else str(self.scale_factor)
        return f"{self.name}[{scale}{self.unit}]"

    @classmethod
    def _from_dtype(cls, dtype: np.dtype[Any]) -> Self:
        unit, count = np.datetime_data(dtype)
        return cls(dtype.kind, unit, int(count), dtype.byteorder)  # type: ignore[arg-type]

    @classmethod
    def from_json(
        cls, value: object, *, zarr_format: ZarrFormat, object_codec: str | None = None
    ) -> Self | None:
        if zarr_format == 3:
            if not isinstance(value, dict) or value.get("name") not in _KIND_OF:
                return None
            name = value["name"]
            config = value.get("configuration")
            if set(value) != {"name", "configuration"} or not isinstance(config, dict):
                raise MetadataError(f"{name} needs a configuration with unit and scale_factor")
            if set(config) != {"unit", "scale_factor"}:
                raise MetadataError(
                    f"the configuration of {name} must have exactly unit and scale_factor, "
                    f"got {config!r}"
                )
            try:
                return cls(_KIND_OF[name], config["unit"], config["scale_factor"])  # type: ignore[arg-type]
            except ConfigError as exc:
                raise MetadataError(f"invalid {name} configuration {config!r}: {exc}") from None
        if object_codec is not None or not isinstance(value, str):
            return None
        if not re.fullmatch(r"[<>|=][Mm]8(\[\d*[A-Za-zμ]+\])?", value):
            return None
        try:
            dtype = np.dtype(value)
        except TypeError as exc:
            raise MetadataError(f"invalid v2 time dtype {value!r}: {exc}") from None
        return cls._from_dtype(dtype)

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Self | None:
        return cls._from_dtype(dtype) if dtype.kind in "Mm" else None

    def to_json(self, zarr_format: ZarrFormat) -> Any:
        if zarr_format == 2:
            return self._dtype.str
        return {
            "name": self.name,
            "configuration": {"unit": self.unit, "scale_factor": self.scale_factor},
        }

    def native(self) -> TimeDataType:
        if self._dtype.byteorder in "=|":
            return self
        return type(self)(self.kind, self.unit, self.scale_factor)

    def _from_count(self, count: int) -> Any:
        return np.array(count, dtype=np.int64).view(self._dtype.newbyteorder("="))[()]

    def default_fill(self) -> Any:
        return self._from_count(NAT)

    def fill_from_json(self, value: object, *, zarr_format: ZarrFormat) -> Any:
        if value == "NaT":
            return self.default_fill()
        if is_json_int(value) and NAT <= value < 2**63:  # type: ignore[operator]
            return self._from_count(int(value))  # type: ignore[call-overload]
        bad_fill(value, self.describe(), "an integer count or 'NaT'")

    def fill_to_json(self, value: Any, *, zarr_format: ZarrFormat) -> Any:
        return int(np.asarray(value, self._dtype.newbyteorder("=")).view(np.int64))

    def cast_fill(self, value: Any) -> Any:
        if is_json_int(value) or (
            isinstance(value, np.integer) and not isinstance(value, np.timedelta64)
        ):
            if not NAT <= int(value) < 2**63:
                bad_user_fill(value, self.describe(), "a 64-bit count")
            return self._from_count(int(value))
        if isinstance(value, str) and value == "NaT":
            return self.default_fill()
        native = self._dtype.newbyteorder("=")
        want = np.datetime64 if self.kind == "M" else np.timedelta64
        if self.kind == "m" and isinstance(value, str):
            bad_user_fill(value, self.describe(), "a timedelta64, a count or 'NaT'")
        ok = (
            isinstance(value, str | want)
            or (self.kind == "M" and isinstance(value, datetime.date))
            or (self.kind == "m" and isinstance(value, datetime.timedelta))
        )
        if not ok:
            bad_user_fill(value, self.describe(), f"a {want.__name__}, its text or a count")
        try:
            source = np.asarray(want(value))
            scalar = source.astype(native)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(
                f"fill_value {value!r} is not valid for {self.describe()}: {exc}"
            ) from None
        if not np.isnat(scalar) and scalar.astype(source.dtype) != source:
            bad_user_fill(value, self.describe(), f"a value {self.describe()} holds exactly")
        return scalar[()]
