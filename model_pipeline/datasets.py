"""The bundled sample: a synthetic credit-risk data set made by code.

Two domains stand in for the two clouds' customer bases:

* ``source``: a large, older, better-off population with a low default rate,
  the data the model was first trained on;
* ``target``: a small population that is younger, earns less, uses more of its
  credit and defaults more often, *and* whose defaults depend on the features
  somewhat differently. A model trained on the source is decent here but not
  optimal, which is what transfer fine-tuning is for.

Nothing is downloaded; the same ``(domain, n_rows, seed)`` always gives a
byte-identical frame. The frame carries the ordinary dirt of real data (exact
duplicate rows, missing values, a few gross outliers) so that the cleaning and
preprocessing steps have real work to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES: list[str] = [
    "age",
    "annual_income",
    "debt_to_income",
    "credit_utilization",
    "open_accounts",
    "late_payments_2y",
    "loan_amount",
    "employment_years",
]
"""The model's input columns, in the order the exported model expects them."""

from .config import LABEL  # noqa: E402 - the sample's label column is the config default

"""The binary target column: 1 when the borrower defaulted."""

DOMAINS = ("source", "target")

# Features that go missing in the wild; age and counts come from the bureau and
# are always filled, self-reported or derived values are the ones left blank.
_NULLABLE = ("annual_income", "debt_to_income", "credit_utilization", "employment_years")
_DUPLICATE_FRAC = 0.02
_MISSING_FRAC = 0.03
_OUTLIER_FRAC = 0.001


@dataclass(frozen=True)
class _Population:
    """How one domain's borrowers are distributed and how they default."""

    age_mean: float
    age_sd: float
    income_median: float
    income_sigma: float
    dti_beta: tuple[float, float]
    dti_scale: float
    util_beta: tuple[float, float]
    open_accounts_mean: float
    late_mean: float
    loan_median: float
    employment_shape: float
    employment_scale: float
    # weights on the standardized features (see _risk_logit) and the intercept
    intercept: float
    weights: dict[str, float]
    util_x_late: float  # an interaction only the target's lenders see


_POPULATIONS = {
    "source": _Population(
        age_mean=44.0, age_sd=12.0, income_median=62_000.0, income_sigma=0.5,
        dti_beta=(2.0, 5.0), dti_scale=0.8, util_beta=(2.0, 4.0),
        open_accounts_mean=7.0, late_mean=0.5, loan_median=15_000.0,
        employment_shape=2.5, employment_scale=3.5,
        intercept=-2.45,
        weights={"age": -0.35, "annual_income": -0.7, "debt_to_income": 0.7, "credit_utilization": 0.8,
                 "open_accounts": 0.1, "late_payments_2y": 0.9, "loan_amount": 0.35, "employment_years": -0.3},
        util_x_late=0.0,
    ),
    "target": _Population(
        age_mean=31.0, age_sd=7.0, income_median=36_000.0, income_sigma=0.55,
        dti_beta=(2.5, 4.0), dti_scale=0.9, util_beta=(3.0, 2.5),
        open_accounts_mean=4.0, late_mean=1.1, loan_median=9_000.0,
        employment_shape=1.5, employment_scale=2.5,
        intercept=-4.8,
        weights={"age": -0.15, "annual_income": -0.35, "debt_to_income": 1.0, "credit_utilization": 1.4,
                 "open_accounts": 0.3, "late_payments_2y": 0.6, "loan_amount": 0.6, "employment_years": -0.55},
        util_x_late=0.5,
    ),
}


def _standardized(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Features on a common, domain-independent scale, so that a weight means
    the same thing in both domains and only the weights express the shift."""
    return {
        "age": (df["age"].to_numpy() - 40.0) / 12.0,
        "annual_income": (np.log(df["annual_income"].to_numpy()) - np.log(50_000.0)) / 0.6,
        "debt_to_income": (df["debt_to_income"].to_numpy() - 0.3) / 0.15,
        "credit_utilization": (df["credit_utilization"].to_numpy() - 0.35) / 0.2,
        "open_accounts": (df["open_accounts"].to_numpy() - 6.0) / 3.0,
        "late_payments_2y": np.log1p(df["late_payments_2y"].to_numpy()) / 0.5,
        "loan_amount": (np.log(df["loan_amount"].to_numpy()) - np.log(12_000.0)) / 0.7,
        "employment_years": (df["employment_years"].to_numpy() - 6.0) / 5.0,
    }


def _risk_logit(df: pd.DataFrame, pop: _Population) -> np.ndarray:
    z = _standardized(df)
    logit = np.full(len(df), pop.intercept)
    for name, w in pop.weights.items():
        logit += w * z[name]
    return logit + pop.util_x_late * z["credit_utilization"] * z["late_payments_2y"]


def _clean_borrowers(pop: _Population, n: int, rng: np.random.Generator) -> pd.DataFrame:
    age = np.clip(rng.normal(pop.age_mean, pop.age_sd, n), 18, 85).round()
    # employment cannot start before 18; values are whole years
    employment = np.minimum(rng.gamma(pop.employment_shape, pop.employment_scale, n), age - 18).round()
    # rounding to what a bureau file holds keeps the CSV round trip exact
    return pd.DataFrame({
        "age": age,
        "annual_income": np.exp(rng.normal(np.log(pop.income_median), pop.income_sigma, n)).round(-1),
        "debt_to_income": (rng.beta(*pop.dti_beta, n) * pop.dti_scale).round(4),
        "credit_utilization": rng.beta(*pop.util_beta, n).round(4),
        "open_accounts": rng.poisson(pop.open_accounts_mean, n).astype(np.float64),
        "late_payments_2y": rng.poisson(pop.late_mean, n).astype(np.float64),
        "loan_amount": np.exp(rng.normal(np.log(pop.loan_median), 0.6, n)).round(-2),
        "employment_years": employment,
    })


def make_credit_risk(domain: str, n_rows: int, seed: int) -> pd.DataFrame:
    """A credit-risk table of ``n_rows`` rows for ``domain`` ("source" or "target").

    Columns are :data:`FEATURES` (float64) and :data:`LABEL` (int64, 0/1). The
    labels come from a logistic model of the features that differs between the
    domains. About 2% of rows are exact duplicates of other rows, about 3% of
    rows have one missing value in a self-reported feature, and about 0.1% of
    rows (at least one) have an income 100 times too large (a units error).
    The same arguments always give a byte-identical frame.
    """
    if domain not in _POPULATIONS:
        raise ValueError(f"unknown domain {domain!r}; use one of {', '.join(DOMAINS)}")
    if n_rows < 10:
        raise ValueError(f"n_rows is {n_rows}; a credit-risk sample needs at least 10 rows")
    # an independent stream per domain: the same seed must not give the two
    # domains correlated noise
    rng = np.random.default_rng(np.random.SeedSequence([seed, DOMAINS.index(domain)]))
    pop = _POPULATIONS[domain]
    n_dupes = round(n_rows * _DUPLICATE_FRAC)
    n_unique = n_rows - n_dupes

    df = _clean_borrowers(pop, n_unique, rng)
    # labels are drawn from the true values, before the dirt below corrupts them
    p_default = 1.0 / (1.0 + np.exp(-_risk_logit(df, pop)))
    df[LABEL] = (rng.random(n_unique) < p_default).astype(np.int64)

    n_outliers = max(1, round(n_unique * _OUTLIER_FRAC))
    outliers = rng.choice(n_unique, size=n_outliers, replace=False)
    df.loc[outliers, "annual_income"] *= 100.0

    missing_rows = rng.choice(n_unique, size=round(n_unique * _MISSING_FRAC), replace=False)
    missing_cols = rng.integers(0, len(_NULLABLE), size=len(missing_rows))
    for col_index, name in enumerate(_NULLABLE):
        df.loc[missing_rows[missing_cols == col_index], name] = np.nan

    dupes = df.iloc[rng.choice(n_unique, size=n_dupes, replace=False)]
    df = pd.concat([df, dupes], ignore_index=True)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    return df[[*FEATURES, LABEL]]


def write_sample(out_dir: str | Path, seed: int = 7, n_source: int = 20_000, n_target: int = 1_200) -> tuple[Path, Path]:
    """Write ``source.csv`` and ``target.csv`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for domain, n in (("source", n_source), ("target", n_target)):
        path = out_dir / f"{domain}.csv"
        # every generated value has at most 12 significant digits, so the file reads back exactly
        make_credit_risk(domain, n, seed).to_csv(path, index=False, float_format="%.12g", lineterminator="\n")
        paths.append(path)
    return paths[0], paths[1]
