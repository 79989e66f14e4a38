"""The diff converts each distinct value of a column once (`push.diff._each_distinct`): the same
text and push-log values as converting cell by cell, whatever the column's dtype."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.push.diff import _each_distinct, _fmt, _text

TEXTS = st.one_of(st.none(), st.sampled_from(["", " ", "lead", " lead ", "A1", "\tB2\n", "Énergie"]), st.text(max_size=6))
FLOATS = st.one_of(st.just(math.nan), st.sampled_from([0.0, -0.0, 1.0, 2.5, 49.999, 1e12]),
                   st.floats(allow_nan=True, allow_infinity=False, width=64))


def _cell_by_cell_text(values: list) -> list:
    return [("" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()) for v in values]


@settings(max_examples=150, deadline=None)
@given(st.lists(TEXTS, max_size=40))
def test_given_a_text_column_then_each_value_is_its_stripped_text_or_empty(values):
    series = pd.Series(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    assert _text(series).tolist() == _cell_by_cell_text(values)
    assert _each_distinct(series, _fmt, None).tolist() == [None if v is None else _fmt(v) for v in values]


@settings(max_examples=150, deadline=None)
@given(st.lists(FLOATS, max_size=40))
def test_given_a_number_column_then_each_value_is_formatted_as_the_push_log_writes_it(values):
    series = pd.Series(values, dtype="float64")
    assert _each_distinct(series, _fmt, None).tolist() == [_fmt(v) for v in values]
    # Numbers equal as numbers are one value: 0.0 and -0.0 read as whichever came first.
    texts = [t.lstrip("-") if t in ("0.0", "-0.0") else t for t in _text(series).tolist()]
    assert texts == [t.lstrip("-") if t in ("0.0", "-0.0") else t for t in _cell_by_cell_text(values)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-3, 3), st.booleans(), st.sampled_from([1.0, 0.0, "1", " x "])),
                max_size=30))
def test_given_a_mixed_column_then_one_true_and_1_0_are_each_converted_as_themselves(values):
    series = pd.Series(values, dtype=object)
    assert _text(series).tolist() == _cell_by_cell_text(values)
    assert _each_distinct(series, _fmt, None).tolist() == [_fmt(v) for v in values]


def test_given_a_nullable_integer_column_then_a_missing_value_is_none_not_its_repr():
    series = pd.Series([1, None, 3], dtype="Int64")
    assert _each_distinct(series, _fmt, None).tolist() == ["1", None, "3"]
    assert _text(series).tolist() == ["1", "", "3"]
