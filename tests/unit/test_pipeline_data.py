"""Loading with one-line errors, cleaning, splitting, preprocessing and fingerprints."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from model_pipeline.data import (
    FLOAT32_MAX,
    DataError,
    Preprocessor,
    check_float32_range,
    clean,
    fingerprint,
    load_table,
    read_table,
    split,
)
from model_pipeline.datasets import FEATURES, LABEL, make_credit_risk

HEADER = ",".join([*FEATURES, LABEL])


def _row(label="0", **overrides):
    values = {f: "1" for f in FEATURES} | overrides
    return ",".join([*(values[f] for f in FEATURES), label])


BAD_TABLES = {
    "empty file": ("", "empty"),
    "header only": (HEADER + "\n", "no rows"),
    "surplus fields": (HEADER + "\n" + _row() + ",9,9\n", "more fields than the header"),
    "ragged rows": (HEADER + "\n" + _row() + "\n" + _row() + ",9,9\n", "cannot parse .* Expected"),
    "no label column": (",".join(FEATURES) + "\n" + ",".join("1" * len(FEATURES)) + "\n", "no label column 'default'"),
    "missing features": ("age,annual_income,default\n30,1000,0\n40,2000,1\n", r"lacks feature column\(s\) debt_to_income"),
    "garbage in a number": (HEADER + "\n" + _row("0") + "\n" + _row("1", annual_income="12k") + "\n", "'annual_income'.*'12k'"),
    "label not 0/1": (HEADER + "\n" + _row("0") + "\n" + _row("2") + "\n", "only 0 and 1 but has 2 "),
    "one class only": (HEADER + "\n" + _row("1") + "\n" + _row("1") + "\n", "only the class 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_tables_raise_one_line_data_errors(tmp_path, case):
    text, expected = BAD_TABLES[case]
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=expected) as info:
        load_table(path)
    message = str(info.value)
    assert "\n" not in message, "errors must be one line for the CLI"
    assert str(path) in message, "the message must name the file"
    assert ";" in message, "the message must say what to do after the problem"


def test_binary_garbage_is_a_data_error(tmp_path):
    path = tmp_path / "model.csv"
    path.write_bytes(bytes(range(256)) * 4)  # e.g. a model file passed where the data was meant
    with pytest.raises(DataError, match=str(path)) as info:
        load_table(path)
    assert "\n" not in str(info.value)


def test_missing_file_error_names_path_and_fix(tmp_path):
    with pytest.raises(DataError, match=r"not found: .*nope\.csv; .*lepton demo"):
        load_table(tmp_path / "nope.csv")


def test_parquet_reads_or_names_the_missing_engine(tmp_path):
    df = make_credit_risk("target", 200, seed=1)
    path = tmp_path / "t.parquet"
    try:
        df.to_parquet(path)
    except ImportError:
        path.write_bytes(b"PAR1")  # no engine to write one; the reader must then say what to install
        with pytest.raises(DataError, match="pyarrow"):
            load_table(path)
        return
    pd.testing.assert_frame_equal(load_table(path), df.astype(np.float64))


def test_load_keeps_features_and_label_in_order_as_float(tmp_path):
    path = tmp_path / "t.csv"
    df = make_credit_risk("source", 300, seed=2)
    df.insert(0, "customer_id", range(len(df)))
    df.to_csv(path, index=False)
    loaded = load_table(path)
    assert list(loaded.columns) == [*FEATURES, LABEL]
    assert (loaded.dtypes == np.float64).all()


def test_clean_drops_duplicates_and_unlabelled_rows_and_counts_them():
    df = pd.DataFrame({
        "x": [1.0, 1.0, 1.0, 2.0, np.nan, np.nan, 3.0, 4.0],
        LABEL: [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, np.nan, 0.0],
    })
    cleaned, report = clean(df)
    # rows 1, 2 repeat row 0; row 5 repeats row 4 (NaN counts as equal); row 6 has no label
    assert (report.rows_in, report.duplicates_dropped, report.missing_label_dropped, report.rows_out) == (8, 3, 1, 4)
    assert cleaned["x"].tolist()[:2] == [1.0, 2.0] and len(cleaned) == 4
    assert report.missing_values == {"x": 1}
    assert list(cleaned.index) == [0, 1, 2, 3]


def _labelled(n=1000, rate=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"row_id": np.arange(n, dtype=float), LABEL: (rng.random(n) < rate).astype(float)})


def test_split_is_deterministic_and_seed_dependent():
    df = _labelled()
    a, b, c = split(df, seed=3), split(df, seed=3), split(df, seed=4)
    for part in ("train", "val", "test"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))
    assert not a.test.equals(c.test)


def test_split_is_disjoint_complete_and_stratified():
    df = _labelled(n=2000, rate=0.2)
    parts = split(df, seed=1, val_frac=0.15, test_frac=0.25)
    ids = [set(p["row_id"]) for p in (parts.train, parts.val, parts.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set.union(*ids) == set(df["row_id"])
    assert len(parts.test) == pytest.approx(500, abs=1) and len(parts.val) == pytest.approx(300, abs=1)
    overall = df[LABEL].mean()
    for p in (parts.train, parts.val, parts.test):
        # stratified: each part's base rate is the overall one up to one row of rounding per class
        assert abs(p[LABEL].mean() - overall) <= 2 / len(p)


def test_split_refuses_a_class_too_small_to_share():
    df = pd.DataFrame({"row_id": np.arange(50.0), LABEL: [1.0] * 2 + [0.0] * 48})
    with pytest.raises(DataError, match="class 1 has only 2 row"):
        split(df, seed=0)
    with pytest.raises(DataError, match="sum to less than 1"):
        split(_labelled(), seed=0, val_frac=0.6, test_frac=0.5)


def test_preprocessor_imputes_clips_and_standardizes_from_training_rows():
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan, 100.0], "b": [5.0] * 5})
    pre = Preprocessor.fit(train, features=["a", "b"])
    assert pre.median[0] == 2.5  # median of the present values
    assert pre.clip_low[0] == pytest.approx(np.quantile([1, 2, 3, 100], 0.005))
    assert pre.clip_high[0] == pytest.approx(np.quantile([1, 2, 3, 100], 0.995))
    assert pre.std[1] == 1.0, "a constant feature must not divide by zero"
    x = pre.transform(pd.DataFrame({"a": [np.nan, 1e9, -1e9], "b": [5.0, 5.0, np.nan]}))
    assert x.dtype == np.float32 and x.shape == (3, 2)
    assert x[0, 0] == pytest.approx((2.5 - pre.mean[0]) / pre.std[0], rel=1e-6)
    assert x[1, 0] == pytest.approx((pre.clip_high[0] - pre.mean[0]) / pre.std[0], rel=1e-6)
    assert x[2, 0] == pytest.approx((pre.clip_low[0] - pre.mean[0]) / pre.std[0], rel=1e-6)
    np.testing.assert_array_equal(x[:, 1], 0.0)


def test_preprocessor_params_depend_on_training_rows_only():
    df, _ = clean(make_credit_risk("target", 1200, seed=7))
    parts = split(df, seed=7)
    fitted = Preprocessor.fit(parts.train)
    # wreck every row the model must not learn from: the fit cannot notice
    wrecked_test = parts.test.assign(annual_income=parts.test["annual_income"] * 1000, age=np.nan)
    assert Preprocessor.fit(parts.train) == fitted
    assert Preprocessor.fit(pd.concat([parts.train, wrecked_test])) != fitted, "control: the test rows would change the fit"


def test_preprocessor_round_trips_through_json():
    pre = Preprocessor.fit(make_credit_risk("source", 500, seed=1))
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again == pre


@pytest.mark.parametrize("doc", [{"format": 99, "features": []}, {"format": 1}, {"format": 1, "features": [{"name": "a"}]}])
def test_malformed_preprocessor_params_raise_data_error(doc):
    with pytest.raises(DataError, match="preprocessor parameters"):
        Preprocessor.from_dict(doc)


def test_fingerprint_ignores_row_and_column_order_but_not_values():
    df = make_credit_risk("target", 400, seed=4)
    fp = fingerprint(df)
    assert len(fp) == 64 and int(fp, 16) >= 0
    shuffled = df.sample(frac=1.0, random_state=1)[list(reversed(df.columns))]
    assert fingerprint(shuffled) == fp
    assert fingerprint(df.astype(np.float64)) == fp, "1 and 1.0 are the same data"
    changed = df.copy()
    changed.loc[0, "age"] += 1
    assert fingerprint(changed) != fp
    assert fingerprint(df.iloc[1:]) != fp


def test_a_repeated_header_name_is_refused_not_renamed(tmp_path):
    # read_csv alone would hand back 'age' and 'age.1', and 'age.1' would become a model input name
    path = tmp_path / "t.csv"
    path.write_text("age,income,age,default\n30,1,31,0\n40,2,41,1\n")
    with pytest.raises(DataError, match=r"names column\(s\) 'age' more than once; give every column a distinct name") as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_a_real_dotted_column_name_is_not_mistaken_for_a_repeat(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("age,age.1,default\n30,1,0\n40,2,1\n")
    assert list(read_table(path).columns) == ["age", "age.1", "default"]


def test_a_pipe_is_refused_without_being_opened(tmp_path):
    path = tmp_path / "t.csv"
    os.mkfifo(path)  # opening it for reading would block this test forever
    with pytest.raises(DataError, match="is not a regular file"):
        read_table(path)


def test_float32_range_names_the_first_column_and_row_beyond_it():
    frame = pd.DataFrame({"a": [1.0, np.nan, FLOAT32_MAX], "b": ["1", "2e39", "x"], "c": [0.0, 1.0, -np.inf]})
    check_float32_range(frame, ["a"], "t.csv")  # missing values and the largest float32 itself are fine
    with pytest.raises(DataError, match=r"column 'b' in t.csv holds 2e\+39 in data row 2 \(1 such value\(s\)\)"):
        check_float32_range(frame, ["a", "b", "c"], "t.csv")
    with pytest.raises(DataError, match=r"column 'c' in t.csv holds -inf in data row 3"):
        check_float32_range(frame, ["c"], "t.csv")
