"""The bundled sample: deterministic, dirty like real data, and shifted between domains."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model_pipeline.data import load_table
from model_pipeline.datasets import FEATURES, LABEL, make_credit_risk, write_sample


def test_same_seed_gives_byte_identical_frames():
    a = make_credit_risk("source", 3000, seed=11)
    b = make_credit_risk("source", 3000, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert a.to_csv(index=False).encode() == b.to_csv(index=False).encode()


def test_another_seed_or_domain_gives_other_rows():
    base = make_credit_risk("source", 1000, seed=11)
    assert not base.equals(make_credit_risk("source", 1000, seed=12))
    assert not base.equals(make_credit_risk("target", 1000, seed=11))


def test_columns_are_the_features_then_a_binary_label():
    df = make_credit_risk("target", 500, seed=3)
    assert list(df.columns) == [*FEATURES, LABEL]
    assert set(df[LABEL].unique()) == {0, 1}


@pytest.mark.parametrize("domain", ["source", "target"])
def test_sample_carries_duplicates_missing_values_and_outliers(domain):
    df = make_credit_risk(domain, 5000, seed=5)
    dupes = df.duplicated().mean()
    assert 0.01 <= dupes <= 0.03, f"duplicate share {dupes:.3f}, expected about 2%"
    rows_with_nan = df[FEATURES].isna().any(axis=1).mean()
    assert 0.02 <= rows_with_nan <= 0.045, f"rows with a missing value {rows_with_nan:.3f}, expected about 3%"
    assert (df[FEATURES].isna().sum() > 0).sum() >= 3, "missing values should be spread over several features"
    assert df[LABEL].notna().all()
    income = df["annual_income"].dropna()
    assert income.max() > 20 * income.quantile(0.99), "expected at least one gross income outlier (x100)"


def test_target_domain_is_shifted_from_source():
    src = make_credit_risk("source", 20000, seed=7)
    tgt = make_credit_risk("target", 20000, seed=7)
    assert tgt[LABEL].mean() > src[LABEL].mean() + 0.1, "the target's default base rate should be clearly higher"
    assert tgt["age"].mean() < src["age"].mean() - 5
    assert tgt["annual_income"].median() < 0.8 * src["annual_income"].median()
    assert tgt["credit_utilization"].mean() > src["credit_utilization"].mean() + 0.1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown domain"):
        make_credit_risk("moon", 100, seed=1)
    with pytest.raises(ValueError, match="at least 10 rows"):
        make_credit_risk("source", 3, seed=1)


def test_written_sample_reads_back_to_the_generated_values(tmp_path):
    source_csv, target_csv = write_sample(tmp_path, seed=9, n_source=800, n_target=300)
    assert (source_csv.name, target_csv.name) == ("source.csv", "target.csv")
    for path, domain, n in ((source_csv, "source", 800), (target_csv, "target", 300)):
        expected = make_credit_risk(domain, n, seed=9).astype(np.float64)
        pd.testing.assert_frame_equal(load_table(path), expected)
