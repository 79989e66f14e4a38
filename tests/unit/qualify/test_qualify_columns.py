"""The fast factorisation paths of `LeadColumns` agree with `pd.factorize`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from leadflow.qualify.columns import LeadColumns, _factorize

VALUES = [
    ["b", None, "a", "b", "", " a ", None, "c"],
    [None, None],
    ["x", "y", "x"],
    [],
    [None, "z", None, "z"],
]


def _dtypes() -> list[object]:
    return [
        pd.StringDtype("pyarrow"),
        pd.StringDtype("pyarrow", na_value=np.nan),
        pd.ArrowDtype(pa.string()),
        pd.ArrowDtype(pa.large_string()),
        object,
        "category",
    ]


@pytest.mark.parametrize("values", VALUES)
@pytest.mark.parametrize("dtype", _dtypes(), ids=str)
def test_factorize_matches_pandas(values: list[object], dtype: object) -> None:
    series = pd.Series(values, dtype=dtype)
    col = _factorize(series)
    rows = col.objects().tolist()
    assert rows == [None if pd.isna(v) else v for v in series.astype(object).tolist()]
    assert len(set(col.uniques)) == len(col.uniques)
    # The index points at slots; the per-slot table of codes maps it back to pandas' codes.
    slot_codes = col.lut(np.arange(len(col.uniques)), -1)
    assert (slot_codes[col.index] == col.codes).all()
    assert col.slot_values[col.missing_slot] is None
    if dtype != "category":
        codes, uniques = pd.factorize(series.astype(object), use_na_sentinel=True)
        assert col.codes.tolist() == codes.tolist()
        assert col.uniques == list(uniques)


def test_chunked_arrow_column() -> None:
    chunked = pa.chunked_array([["a", None], ["b", "a"], [None]])
    series = pd.Series(pd.arrays.ArrowExtensionArray(chunked))
    col = LeadColumns(pd.DataFrame({"industry": series})).text("industry")
    assert col.codes.tolist() == [0, -1, 1, 0, -1]
    assert col.uniques == ["a", "b"]
    assert col.lookup(np.array([True, False]), True).tolist() == [True, True, False, True, True]


def test_given_threads_then_text_columns_are_factorised_up_front_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    import leadflow.qualify.columns as columns

    monkeypatch.setattr(columns, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setenv("LEADFLOW_FACTORIZE_THREADS", "2")
    frame = pd.DataFrame({
        "industry": pd.Series(["a", None, "b", "a"], dtype=pd.StringDtype("pyarrow")),
        "technologies": pd.Series(["x;y", None, None, "z"], dtype=pd.StringDtype("pyarrow")),
        "country": pd.Series(["x", "y", None, "x"], dtype=object),
    })
    cols = LeadColumns(frame)
    cols.factorize_text(["industry", "technologies", "country", "absent"])
    assert set(cols._text) == {"industry", "technologies"}  # only Arrow-backed text, up front
    assert cols.text("industry").objects().tolist() == ["a", None, "b", "a"]
    assert cols.text("technologies").objects().tolist() == ["x;y", None, None, "z"]
    assert cols.text("country").objects().tolist() == ["x", "y", None, "x"]
    assert cols.text("absent").codes.tolist() == [-1] * 4
