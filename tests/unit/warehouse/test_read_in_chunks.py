"""Warehouse reads fetch a chunk of rows at a time (a large table's rows as Python objects all at
once were most of a step's peak memory) and give the frame a read of everything at once gives:
same columns, dtypes and values, whatever the chunk size and wherever the NULLs fall (SQLite and
PostgreSQL)."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, MetaData, Table, Text, create_engine, select

from leadflow.warehouse import repo


@pytest.fixture
def table_engine(warehouse_url):
    engine = create_engine(warehouse_url)
    meta = MetaData()
    table = Table("t", meta, Column("id", Integer, primary_key=True), Column("late_null_int", Integer),
                  Column("f", Float), Column("text", Text), Column("flag", Boolean), Column("late_text", Text),
                  Column("big", BigInteger), Column("never", Text))
    meta.create_all(engine)
    rows = [{"id": k,
             "late_null_int": None if k >= 700 and k % 2 else k,  # ints, NULLs only in later chunks
             "f": None if k % 7 == 0 else k / 3,
             "text": None if k % 5 == 0 else "v" * (k % 4),  # "" and NULL both
             "flag": (k % 3 == 0) if k < 500 or k % 11 else None,  # bools, NULLs only later
             "late_text": "late" if k >= 990 else None,  # NULL-only chunks, then text
             "big": 10**12 + k, "never": None}
            for k in range(1000)]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    yield engine, table
    engine.dispose()


@pytest.mark.parametrize("chunk_rows", [1, 7, 333, 999, 1000, 5000])
def test_given_any_chunk_size_then_the_frame_equals_the_one_read_at_once(table_engine, chunk_rows):
    engine, table = table_engine
    query = select(table).order_by(table.c.id)
    whole = repo.read_frame(engine, query, chunk_rows=10**9)
    assert_frame_equal(repo.read_frame(engine, query, chunk_rows=chunk_rows), whole, check_exact=True)


def test_given_a_read_at_once_then_dtypes_are_those_pandas_infers_from_the_records(table_engine):
    engine, table = table_engine
    query = select(table).order_by(table.c.id)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    expected = pd.DataFrame({key: [row[key] for row in rows] for key in rows[0]})
    got = repo.read_frame(engine, query, chunk_rows=100)
    assert dict(got.dtypes) == {**dict(expected.dtypes), "text": got["text"].dtype, "late_text": got["late_text"].dtype}
    assert str(got["text"].dtype) == "str" and str(got["late_text"].dtype) == "str"
    assert got["late_null_int"].isna().sum() == 150 and got["flag"].dtype == object


def test_given_no_rows_then_the_frame_has_the_columns_and_no_rows(table_engine):
    engine, table = table_engine
    got = repo.read_frame(engine, select(table).where(table.c.id < 0), chunk_rows=10)
    assert list(got.columns) == [c.name for c in table.columns] and got.empty
