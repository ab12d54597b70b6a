"""Tabular data in, model-ready arrays out: load, validate, clean, split,
preprocess and fingerprint.

Every problem a user can fix raises :class:`DataError` with a one-line
message naming the problem and the fix, so the CLI can print it as it is.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from lepton_cdk.contract import ContractError, open_regular_file

from .datasets import FEATURES, LABEL

# Clipping bounds: wide enough to keep every plausible value, narrow enough
# that a units error (income x100) cannot dominate a standardized feature.
CLIP_QUANTILES = (0.005, 0.995)
_PREPROCESSOR_FORMAT = 1


class DataError(ValueError):
    """The input data cannot be used; the message says what is wrong and how to fix it."""


def _read_raw(fh: IO[bytes], path: Path) -> pd.DataFrame:
    """The table in the open file ``fh`` (named ``path`` in messages), as pandas reads it."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq

            # pyarrow refuses a file naming a column twice with a bare "Multiple matches for FieldRef"; name the column instead
            repeated = _duplicate_names(pq.read_schema(fh).names)
        except ImportError:
            repeated = []
        except Exception:  # a corrupt file: the read below says so
            repeated = []
        fh.seek(0)
        if repeated:
            raise DataError(f"data file {path} names column(s) {', '.join(map(repr, repeated))} more than once; "
                            "give every column a distinct name")
        try:
            return pd.read_parquet(fh)
        except ImportError:
            raise DataError(f"reading Parquet file {path} needs pyarrow, which is not installed; `pip install pyarrow` or convert the file to CSV") from None
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise DataError(f"cannot parse {path} as Parquet ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); re-export the file") from None
    try:
        with warnings.catch_warnings():
            # pandas would otherwise turn surplus leading fields into an index,
            # or drop trailing ones with only a warning: shifted data, silently
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # low_memory=False: one dtype per column, not per chunk, so garbage is found wherever it is
            return pd.read_csv(fh, low_memory=False, index_col=False)
    except pd.errors.ParserWarning:
        raise DataError(f"cannot parse {path} as CSV (some rows have more fields than the header); check the delimiter and quoting") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} has no header and no rows; write the CSV with a header line of column names") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot parse {path} as CSV ({detail}); check the delimiter is a comma and every row has the same number of fields") from None


def _numeric_column(df: pd.DataFrame, name: str, path: Path) -> pd.Series:
    col = df[name]
    if pd.api.types.is_bool_dtype(col):
        return col.astype(np.float64)
    if pd.api.types.is_numeric_dtype(col):
        return col.astype(np.float64)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"column {name!r} in {path} must be numeric but has {int(bad.sum())} non-numeric value(s), "
            f"first {col.iloc[first]!r} in data row {first + 1}; fix or blank those cells (blank means missing)"
        )
    return converted.astype(np.float64)


def _duplicate_names(names: Sequence[Any]) -> list[str]:
    counts: dict[str, int] = {}
    for name in names:
        text = "" if name is None or (isinstance(name, float) and math.isnan(name)) else str(name)
        if text:  # blank header cells are unnamed, not duplicates of each other
            counts[text] = counts.get(text, 0) + 1
    return [name for name, n in counts.items() if n > 1]


def _header_names(fh: IO[bytes]) -> list[Any]:
    """The CSV header's cells as written; ``read_csv`` renames a repeated ``x`` to ``x.1``, which hides the repeat."""
    fh.seek(0)
    try:
        head = pd.read_csv(fh, header=None, nrows=1, dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return []  # the full read already parsed this file; nothing more to learn here
    return head.iloc[0].tolist() if len(head) else []


def read_table(path: str | Path, *, missing_hint: str = "check the path given to --source-data / --target-data") -> pd.DataFrame:
    """Read a CSV or Parquet file as it is (no type conversion), refusing a missing, empty or unparseable one.

    Also refused, each with :class:`DataError`: a folder, pipe or device
    instead of a file, an unreadable file, a header that names a column
    twice (pandas would silently rename the second one ``x.1``, and that
    name would reach the model's signature) and cells holding lists or
    mappings instead of single values. ``missing_hint`` is the fix named when
    the file does not exist.
    """
    path = Path(path)
    try:
        # refuses a folder, a FIFO (which would block forever) and an unreadable file, each in one line
        fh = open_regular_file(path, what="data file", fix="pass a CSV or Parquet file",
                               missing=f"data file not found: {path}; {missing_hint}")
    except ContractError as exc:
        raise DataError(str(exc)) from None
    with fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise DataError(f"data file {path} is empty (0 bytes); re-export it with a header line and at least one row")
        try:
            raw = _read_raw(fh, path)
            header = list(raw.columns) if path.suffix.lower() in (".parquet", ".pq") else _header_names(fh)
        except OSError as exc:
            raise DataError(f"cannot read data file {path} ({exc.strerror or type(exc).__name__}); check the file and retry") from None
    repeated = _duplicate_names(header) or _duplicate_names([str(c) for c in raw.columns])
    if repeated:
        raise DataError(f"data file {path} names column(s) {', '.join(map(repr, repeated))} more than once; "
                        "give every column a distinct name")
    if raw.empty:
        raise DataError(f"data file {path} has a header but no rows; export the data again with its rows")
    raw.columns = [str(c) for c in raw.columns]
    for col in raw.columns:
        if raw[col].dtype == object:
            nested = raw[col].map(lambda v: isinstance(v, list | tuple | dict | set | np.ndarray))
            if nested.any():
                row = int(np.flatnonzero(nested.to_numpy())[0])
                kind = type(raw[col].iloc[row]).__name__
                raise DataError(f"column {col!r} in {path} holds a {kind} in data row {row + 1}, not a single value; "
                                "flatten it into columns or drop it before training")
    return raw


# The model computes in float32: a larger magnitude becomes inf there and
# poisons the clip bounds, the loss or the parity gate.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(frame: pd.DataFrame, columns: Sequence[str], where: str | Path) -> None:
    """Raise :class:`DataError` naming the column and data row (1-based) of the first value in ``columns``
    that is infinite or beyond float32's range; missing values (NaN) are allowed. ``where`` names the table."""
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = np.abs(values) > FLOAT32_MAX
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"column {col!r} in {where} holds {values[row]:g} in data row {row + 1} ({int(bad.sum())} such value(s)), beyond the "
                f"float32 range the model computes in (|x| <= {FLOAT32_MAX:.4g}); rescale the column or blank those cells"
            )


def load_table(path: str | Path, features: Sequence[str] = FEATURES, label: str = LABEL) -> pd.DataFrame:
    """Read a CSV or Parquet table and check it can train a binary classifier.

    Returns a frame with exactly ``features`` (float64, NaN for missing) and
    ``label`` (float64: 0.0, 1.0 or NaN), in that order; other columns are
    dropped. Raises :class:`DataError` for a missing, empty or unparseable
    file, missing columns, non-numeric values in a feature, or a label that
    is not 0/1 with both classes present.
    """
    path = Path(path)
    raw = read_table(path, missing_hint="check the path, or run `lepton demo` to generate the bundled sample")
    if label not in raw.columns:
        raise DataError(f"data file {path} has no label column {label!r} (columns: {', '.join(map(str, raw.columns[:12]))}); pass the right column with --label COLUMN")
    missing = [f for f in features if f not in raw.columns]
    if missing:
        raise DataError(f"data file {path} lacks feature column(s) {', '.join(missing)}; add them (blank cells are allowed) or use a pipeline config that names the features")
    out = pd.DataFrame({name: _numeric_column(raw, name, path) for name in [*features, label]})
    labels = out[label].dropna()
    odd = labels[~labels.isin([0.0, 1.0])]
    if len(odd):
        raise DataError(
            f"label column {label!r} in {path} must hold only 0 and 1 but has {float(odd.iloc[0]):g} "
            f"({len(odd)} row(s)); map it to 0 (no default) / 1 (default)"
        )
    classes = set(labels.unique())
    if len(classes) < 2:
        only = "no labelled rows" if not classes else f"only the class {int(next(iter(classes)))}"
        raise DataError(f"label column {label!r} in {path} has {only}; a classifier needs rows of both classes 0 and 1")
    return out


@dataclass(frozen=True)
class CleaningReport:
    """What :func:`clean` removed, for the metrics and the run log."""

    rows_in: int
    duplicates_dropped: int
    missing_label_dropped: int
    rows_out: int
    missing_values: dict[str, int] = field(default_factory=dict)  # per feature, in the kept rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def clean(df: pd.DataFrame, label: str = LABEL) -> tuple[pd.DataFrame, CleaningReport]:
    """Drop exact duplicate rows, then rows without a label; returns the rest and the counts.

    Missing feature values are kept: the preprocessor imputes them, the same
    way the served model will.
    """
    deduped = df.drop_duplicates(keep="first")
    labelled = deduped[deduped[label].notna()]
    out = labelled.reset_index(drop=True)
    report = CleaningReport(
        rows_in=len(df),
        duplicates_dropped=len(df) - len(deduped),
        missing_label_dropped=len(deduped) - len(labelled),
        rows_out=len(out),
        missing_values={c: int(n) for c, n in out.drop(columns=[label]).isna().sum().items()},
    )
    return out, report


@dataclass(frozen=True)
class Split:
    """Disjoint train / validation / test partitions of one table."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def split(df: pd.DataFrame, seed: int, val_frac: float = 0.15, test_frac: float = 0.2, label: str = LABEL,
          task: str = "classification", classes: Sequence[float] | None = None) -> Split:
    """Stratified, seeded split: each class is shuffled and cut separately, so
    every partition keeps the label's base rate. Rows keep their original
    order within a partition; the same frame and seed give the same split.
    For ``task="regression"`` the strata are the label's quintiles. The
    classes are 0 and 1 unless ``classes`` lists them (multi-class: the
    label holds class indices)."""
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise DataError(f"val_frac={val_frac} and test_frac={test_frac} must each lie in (0, 1) and sum to less than 1")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    y = df[label].to_numpy(dtype=np.float64)
    if task == "regression":
        # quintile bins: every partition sees the whole range of the target
        edges = np.unique(np.quantile(y, [0.2, 0.4, 0.6, 0.8]))
        y = np.searchsorted(edges, y, side="right").astype(np.float64)
        strata = sorted(set(y.tolist()))
    else:
        strata = [0.0, 1.0] if classes is None else [float(c) for c in classes]
    for cls in strata:
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_test, n_val = round(len(idx) * test_frac), round(len(idx) * val_frac)
        if min(n_test, n_val, len(idx) - n_test - n_val) < 1:
            raise DataError(
                f"{'class' if task != 'regression' else 'label quintile'} {int(cls)} has only {len(idx)} row(s), too few to put one in "
                "each of train, validation and test; add labelled rows of that class"
            )
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    frames = {k: df.iloc[np.sort(np.concatenate(v))].reset_index(drop=True) for k, v in parts.items()}
    return Split(**frames)


@dataclass(frozen=True)
class Preprocessor:
    """Median imputation, quantile clipping and standardization, per feature.

    Fitted on the training split only (anything else leaks the validation and
    test rows into the model). The same parameters are baked into the exported
    model as buffers (see :class:`model_pipeline.models.ServingModel`), so the
    transform here and the one a server runs are the same arithmetic.
    """

    features: tuple[str, ...]
    median: tuple[float, ...]
    clip_low: tuple[float, ...]
    clip_high: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # one-hot encoded text columns and, per column, the categories seen in the
    # training rows (sorted). A missing value ("") or a category the training
    # rows never had encodes as all zeros, here and in the exported graph.
    categorical: tuple[str, ...] = ()
    categories: tuple[tuple[str, ...], ...] = ()

    @property
    def width(self) -> int:
        """Columns of the network's input: one per numeric feature plus one per category."""
        return len(self.features) + sum(len(c) for c in self.categories)

    @classmethod
    def fit(cls, train: pd.DataFrame, features: Sequence[str] = FEATURES, categorical: Sequence[str] = ()) -> Preprocessor:
        """Learn the parameters from the training rows ``train`` (numeric ``features``, text ``categorical`` columns)."""
        cats: list[tuple[str, ...]] = []
        for col in categorical:
            values = sorted({str(v) for v in train[col].tolist() if isinstance(v, str) and v != ""} |
                            {str(v) for v in train[col].tolist() if not isinstance(v, str) and not pd.isna(v)})
            if not values:
                raise DataError(f"categorical column {col!r} has no values in the training rows; fill it or drop it with data.drop_columns")
            cats.append(tuple(values))
        x = train[list(features)].to_numpy(dtype=np.float64)
        empty = [f for f, n in zip(features, np.isfinite(x).sum(axis=0), strict=True) if n == 0]
        if empty:
            raise DataError(f"feature(s) {', '.join(empty)} have no values in the training rows; fill them or drop them from the features")
        median = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
        low, high = np.nanquantile(np.where(np.isfinite(x), x, np.nan), CLIP_QUANTILES, axis=0)
        x = np.clip(np.where(np.isnan(x), median, x), low, high)
        mean, std = x.mean(axis=0), x.std(axis=0)
        # a constant feature would divide by zero; scale 1 leaves it at 0 after centring
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(features), *(tuple(float(v) for v in a) for a in (median, low, high, mean, std)),
                   categorical=tuple(categorical), categories=tuple(cats))

    @classmethod
    def passthrough(cls, train: pd.DataFrame, features: Sequence[str]) -> Preprocessor:
        """Raw values as they are, for a network trained elsewhere on its own inputs (``--model-factory``).

        A missing value becomes the training rows' median and a value is
        clipped to the range the training rows hold (so an infinity or a
        1e30 cannot overflow the network); nothing is standardized
        (mean 0, std 1).
        """
        x = train[list(features)].to_numpy(dtype=np.float64)
        empty = [f for f, n in zip(features, np.isfinite(x).sum(axis=0), strict=True) if n == 0]
        if empty:
            raise DataError(f"feature(s) {', '.join(empty)} have no values in the training rows; fill them or drop them from the features")
        finite = np.where(np.isfinite(x), x, np.nan)
        median, low, high = np.nanmedian(finite, axis=0), np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
        n = len(features)
        return cls(tuple(features), *(tuple(float(v) for v in a) for a in (median, low, high)), (0.0,) * n, (1.0,) * n)

    def transform(self, df: pd.DataFrame, strict: bool = False) -> np.ndarray:
        """The model inputs for ``df``: a float32 array of shape [rows, :attr:`width`].

        With ``strict``, a category the training rows never had raises
        :class:`DataError` (the served graph would encode it as all zeros).
        """
        x = self.transform_array(df[list(self.features)].to_numpy(dtype=np.float32))
        if not self.categorical:
            return x
        return np.concatenate([x, self.onehot(self.categorical_values(df), strict=strict)], axis=1)

    def outlier_counts(self, df: pd.DataFrame) -> dict[str, int]:
        """Per numeric feature, how many present values of ``df`` lie outside the clip bounds (they get clipped)."""
        x = df[list(self.features)].to_numpy(dtype=np.float64)
        low, high = np.asarray(self.clip_low), np.asarray(self.clip_high)
        with np.errstate(invalid="ignore"):
            out = (~np.isnan(x)) & ((x < low) | (x > high))
        return {f: int(n) for f, n in zip(self.features, out.sum(axis=0), strict=True)}

    def categorical_values(self, df: pd.DataFrame) -> np.ndarray:
        """The raw text of the categorical columns, ``[rows, len(categorical)]`` (missing as "")."""
        cols = [df[c].map(lambda v: "" if (not isinstance(v, str) and pd.isna(v)) else str(v)).to_numpy(dtype=object)
                for c in self.categorical]
        return np.stack(cols, axis=1) if cols else np.zeros((len(df), 0), dtype=object)

    def unseen_categories(self, values: np.ndarray) -> dict[str, list[str]]:
        """Per categorical column, the values in ``values`` ([rows, m] text) the training rows never had."""
        out: dict[str, list[str]] = {}
        for j, (col, cats) in enumerate(zip(self.categorical, self.categories, strict=True)):
            known = set(cats) | {""}
            bad = sorted({str(v) for v in values[:, j] if str(v) not in known})
            if bad:
                out[col] = bad
        return out

    def onehot(self, values: np.ndarray, strict: bool = False) -> np.ndarray:
        """One-hot float32 ``[rows, sum(categories)]`` for raw text ``values`` ``[rows, m]``."""
        if strict:
            unseen = self.unseen_categories(values)
            if unseen:
                col, vals = next(iter(unseen.items()))
                raise DataError(
                    f"column {col!r} has category {vals[0]!r} ({len(vals)} unseen value(s)) that the model never saw in training "
                    f"(known: {', '.join(self.categories[self.categorical.index(col)][:8])}); map it to a known category or leave it blank"
                )
        blocks = []
        for j, cats in enumerate(self.categories):
            col = np.asarray([str(v) for v in values[:, j]], dtype=object)
            blocks.append((col[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(np.float32))
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(values), 0), dtype=np.float32)

    def transform_array(self, x: np.ndarray) -> np.ndarray:
        """:meth:`transform` for a raw float array already in feature order."""
        # float32 throughout, in the same order of operations as ServingModel.forward
        x = np.asarray(x, dtype=np.float32)
        p = {k: np.asarray(getattr(self, k), dtype=np.float32) for k in ("median", "clip_low", "clip_high", "mean", "std")}
        x = np.where(np.isnan(x), p["median"], x)
        x = np.maximum(np.minimum(x, p["clip_high"]), p["clip_low"])
        return ((x - p["mean"]) / p["std"]).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, one entry per feature in model input order."""
        return {
            "format": _PREPROCESSOR_FORMAT,
            "steps": ["impute_median", "clip", "standardize"],
            "clip_quantiles": list(CLIP_QUANTILES),
            "features": [
                {"name": f, "median": self.median[i], "clip_low": self.clip_low[i], "clip_high": self.clip_high[i],
                 "mean": self.mean[i], "std": self.std[i]}
                for i, f in enumerate(self.features)
            ],
            "categorical": [{"name": c, "categories": list(cats), "unseen": "all-zero one-hot"}
                            for c, cats in zip(self.categorical, self.categories, strict=True)],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Preprocessor:
        """Rebuild from :meth:`to_dict` output; :class:`DataError` if it is malformed."""
        fmt = doc.get("format") if isinstance(doc, Mapping) else None
        if fmt != _PREPROCESSOR_FORMAT:
            raise DataError(f"preprocessor parameters have format {fmt!r}, expected {_PREPROCESSOR_FORMAT}; re-run the pipeline with this lepton-cdk")
        try:
            rows = doc["features"]
            cols = {k: tuple(float(r[k]) for r in rows) for k in ("median", "clip_low", "clip_high", "mean", "std")}
            cat_rows = doc.get("categorical", [])
            pre = cls(features=tuple(str(r["name"]) for r in rows), **cols,
                      categorical=tuple(str(r["name"]) for r in cat_rows),
                      categories=tuple(tuple(str(c) for c in r["categories"]) for r in cat_rows))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"preprocessor parameters are malformed ({type(exc).__name__}: {exc}); re-run the pipeline to regenerate them") from None
        if not all(math.isfinite(v) for k in cols for v in cols[k]) or min(pre.std, default=1.0) <= 0:
            raise DataError("preprocessor parameters hold a non-finite value or a std <= 0; re-run the pipeline to regenerate them")
        return pre


def fingerprint(df: pd.DataFrame) -> str:
    """sha256 (hex) of a canonical serialization of ``df``'s contents.

    Independent of row order, column order and index; numeric columns are
    compared as float64 values (so 1 and 1.0 agree), NaN is one value. Two
    frames with the same fingerprint hold the same data.
    """
    cols = sorted(map(str, df.columns))
    canon = df.copy()
    canon.columns = list(map(str, canon.columns))
    canon = canon[cols]
    for c in cols:
        canon[c] = canon[c].astype(np.float64) if pd.api.types.is_numeric_dtype(canon[c]) else canon[c].astype(str)
    canon = canon.sort_values(cols, na_position="last", kind="mergesort") if cols else canon
    text = canon.to_csv(index=False, float_format="%.17g", na_rep="NaN", lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
