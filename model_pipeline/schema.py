"""Any table in: read it, infer which columns are numeric and which
categorical, turn the label into model targets, and reconcile raw with
processed counts.

The schema is *inferred* from the raw tables (types are not learned from
labels, so looking at every row leaks nothing); the categories of each
categorical column are *learned* later, by the preprocessor, on the training
split only. Every problem a user can fix raises
:class:`model_pipeline.data.DataError` with one line naming the problem and
the CLI flag or config key that fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import TASKS  # noqa: E402
from .data import DataError, check_float32_range

# A text column where at least this share of the present values parse as
# numbers is a numeric column with garbage in it, not a categorical one.
NUMERIC_SHARE = 0.9


@dataclass(frozen=True)
class TableSchema:
    """The columns a model reads and how each is treated.

    ``numeric`` columns are imputed, clipped and standardized; ``categorical``
    columns are one-hot encoded (categories learned on the training split).
    ``classes`` holds the two label values for classification (index = the
    0/1 target), empty for regression.
    """

    label: str
    task: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    raw_dtypes: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        """Every input column, numeric first, in model input order."""
        return self.numeric + self.categorical

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        doc = asdict(self)
        for key in ("numeric", "categorical", "classes", "dropped"):
            doc[key] = list(doc[key])
        return doc


def _numeric_share(col: pd.Series) -> tuple[pd.Series, float]:
    present = col.dropna()
    converted = pd.to_numeric(col, errors="coerce")
    if len(present) == 0:
        return converted, 0.0
    return converted, float(converted[col.notna()].notna().mean())


def _is_text(col: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))


def infer_schema(
    tables: dict[str, pd.DataFrame], label: str, task: str, *, drop_columns: Sequence[str] = (), max_categories: int = 50,
    paths: dict[str, Path] | None = None,
) -> TableSchema:
    """Infer the schema shared by ``tables`` (name -> raw frame, e.g. source and target).

    Raises :class:`DataError` when the label is missing, the tables' columns
    differ, a column is empty everywhere, a mostly-numeric column holds
    text, a categorical column has more than ``max_categories`` values, or
    the label does not fit ``task``.
    """
    if task not in TASKS:
        raise DataError(f"task {task!r} is not supported; pass --task classification or --task regression")
    names = list(tables)
    first = tables[names[0]]
    for name, df in tables.items():
        if label not in df.columns:
            where = f" {paths[name]}" if paths and name in paths else ""
            raise DataError(f"{name} data{where} has no label column {label!r} (columns: {', '.join(map(str, df.columns[:12]))}); "
                            "pass the right one with --label COLUMN")
    for name in names[1:]:
        a, b = set(first.columns), set(tables[name].columns)
        if a != b:
            only_a, only_b = sorted(a - b), sorted(b - a)
            raise DataError(
                f"{names[0]} and {name} data have different columns (only in {names[0]}: {', '.join(only_a) or '-'}; "
                f"only in {name}: {', '.join(only_b) or '-'}); give both tables the same columns or list extras under data.drop_columns"
            )
    unknown = [c for c in drop_columns if c not in first.columns]
    if unknown:
        raise DataError(f"data.drop_columns names {', '.join(unknown)}, which the data does not have; fix the names")
    if label in drop_columns:
        raise DataError(f"data.drop_columns includes the label {label!r}; remove it from drop_columns")
    both = pd.concat([df for df in tables.values()], ignore_index=True)
    numeric: list[str] = []
    categorical: list[str] = []
    raw_dtypes = {c: str(first[c].dtype) for c in first.columns}
    for col in first.columns:
        if col == label or col in drop_columns:
            continue
        series = both[col]
        if series.notna().sum() == 0:
            raise DataError(f"column {col!r} has no values in any row (all missing); fill it or drop it with data.drop_columns")
        if not _is_text(series):
            numeric.append(col)
            continue
        converted, share = _numeric_share(series)
        if share == 1.0:
            numeric.append(col)
        elif share >= NUMERIC_SHARE:
            bad = converted.isna() & series.notna()
            first_bad = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"column {col!r} is numeric but has {int(bad.sum())} non-numeric value(s), first {series.iloc[first_bad]!r}; "
                "fix or blank those cells (blank means missing)"
            )
        else:
            n = series.dropna().astype(str).nunique()
            if n > max_categories:
                raise DataError(
                    f"column {col!r} has {n} distinct text values, more than max_categories={max_categories} (an identifier?); "
                    "drop it with data.drop_columns or raise data.max_categories"
                )
            categorical.append(col)
    if not numeric:
        raise DataError("the data has no numeric feature column; the pipeline needs at least one (categorical-only tables are not supported yet)")
    classes: tuple[str, ...] = ()
    if task == "classification":
        classes = _label_classes(both[label], label)
    else:
        converted, share = _numeric_share(both[label])
        if share < 1.0:
            raise DataError(f"label column {label!r} holds text but --task is regression; pass --task classification or fix the label")
    return TableSchema(label=label, task=task, numeric=tuple(numeric), categorical=tuple(categorical), classes=classes,
                       dropped=tuple(drop_columns), raw_dtypes=raw_dtypes)


def _label_classes(series: pd.Series, label: str) -> tuple[str, ...]:
    values = series.dropna()
    if not _is_text(values):
        values = values.astype(np.float64)
        distinct = sorted(set(values.unique()))
        odd = [v for v in distinct if v not in (0.0, 1.0)]
        if odd:
            hint = "pass --task regression" if len(distinct) > 2 else "map it to 0 / 1"
            raise DataError(f"label column {label!r} must hold only 0 and 1 for classification but has {odd[0]:g} ({len(distinct)} distinct values); {hint}")
        if len(distinct) < 2:
            only = "no labelled rows" if not distinct else f"only the class {int(distinct[0])}"
            raise DataError(f"label column {label!r} has {only}; a classifier needs rows of both classes 0 and 1")
        return ("0", "1")
    distinct = sorted(values.astype(str).unique())
    if len(distinct) != 2:
        raise DataError(f"label column {label!r} has {len(distinct)} distinct values ({', '.join(distinct[:5])}); "
                        "binary classification needs exactly 2 (multi-class is not supported yet)")
    return tuple(distinct)


def typed_frame(raw: pd.DataFrame, schema: TableSchema, *, where: str | Path = "the data") -> pd.DataFrame:
    """The schema's columns of ``raw``: numeric as float64 (NaN missing), categorical
    as str (missing as ""), the label as float64 (0/1 for classification, NaN missing).

    Raises :class:`DataError` naming the column and data row of a numeric
    value (or regression label) that is infinite or beyond float32's range;
    ``where`` names the table in that message.
    """
    check_float32_range(raw, [*schema.numeric, *([schema.label] if schema.task == "regression" else [])], where)
    out: dict[str, pd.Series] = {}
    for col in schema.numeric:
        out[col] = pd.to_numeric(raw[col], errors="coerce").astype(np.float64)
    for col in schema.categorical:
        out[col] = raw[col].map(lambda v: "" if pd.isna(v) else str(v)).astype(object)
    y = raw[schema.label]
    if schema.task == "classification" and _is_text(y.dropna()):
        mapping = {c: float(i) for i, c in enumerate(schema.classes)}
        out[schema.label] = y.map(lambda v: np.nan if pd.isna(v) else mapping.get(str(v), np.nan)).astype(np.float64)
    else:
        out[schema.label] = pd.to_numeric(y, errors="coerce").astype(np.float64)
    return pd.DataFrame(out)


def reconcile(raw: pd.DataFrame, schema: TableSchema, cleaning: dict[str, Any], parts: dict[str, int],
              processed_width: int) -> dict[str, Any]:
    """Rows, columns and dtypes from raw to processed, with ``balanced`` true when every row and column is accounted for.

    Rows: raw = duplicates dropped + unlabelled dropped + train + val + test.
    Columns: raw = numeric + categorical + label + dropped; processed width =
    numeric + one column per learned category.
    """
    rows_ok = cleaning["rows_in"] == len(raw) and len(raw) == (
        cleaning["duplicates_dropped"] + cleaning["missing_label_dropped"] + sum(parts.values()))
    cols_ok = len(raw.columns) == len(schema.numeric) + len(schema.categorical) + 1 + len(schema.dropped)
    return {
        "rows": {"raw": len(raw), "duplicates_dropped": cleaning["duplicates_dropped"],
                 "unlabelled_dropped": cleaning["missing_label_dropped"], **parts},
        "columns": {"raw": len(raw.columns), "numeric": len(schema.numeric), "categorical": len(schema.categorical),
                    "label": 1, "dropped": len(schema.dropped), "processed": processed_width},
        "dtypes": {c: {"raw": str(raw[c].dtype), "processed": "float32" if c in schema.numeric else
                       ("one-hot float32" if c in schema.categorical else ("label" if c == schema.label else "dropped"))}
                   for c in raw.columns},
        "balanced": bool(rows_ok and cols_ok),
    }
