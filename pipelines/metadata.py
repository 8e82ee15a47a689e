"""Turn library outputs (Parquet tables, CSV tables, PNG plots) into Dagster metadata values."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

#: Decimal places of floats shown in the Dagster UI (Dice, NSD, loss: 0.1137, not 0.11372905...)
DECIMALS = 4


def _rounded(value: Any) -> Any:
    if isinstance(value, dg.FloatMetadataValue) and value.value is not None:
        value = value.value
    if isinstance(value, float) and math.isfinite(value):
        return round(value, DECIMALS)
    return value


def readable(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` with floats (plain or Dagster float values, e.g. reported through Pipes)
    rounded to :data:`DECIMALS` places; NaN and infinities stay as they are."""
    return {key: _rounded(value) for key, value in metadata.items()}


def table(frame: pd.DataFrame, max_rows: int = 200) -> dg.TableMetadataValue:
    """A DataFrame as a table in the Dagster UI (floats rounded to :data:`DECIMALS`, NaN as null)."""
    frame = frame.head(max_rows)
    columns = []
    for name, dtype in frame.dtypes.items():
        kind = (
            "float"
            if pd.api.types.is_float_dtype(dtype)
            else "int"
            if pd.api.types.is_integer_dtype(dtype)
            else "string"
        )
        columns.append(dg.TableColumn(str(name), kind))
    records = []
    for row in frame.to_dict(orient="records"):
        clean: dict[str, str | int | float | bool | None] = {}
        for key, value in row.items():
            if isinstance(value, float):
                clean[str(key)] = None if math.isnan(value) else round(value, DECIMALS)
            elif isinstance(value, int | bool | str) or value is None:
                clean[str(key)] = value
            else:
                clean[str(key)] = str(value)
        records.append(dg.TableRecord(clean))
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns))


def png_markdown(path: Path, title: str) -> dg.MarkdownMetadataValue:
    """A PNG embedded as a Markdown image (a data URI), so the UI shows it without a file server."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")
