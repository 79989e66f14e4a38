"""Database errors name the statement, never the leads' values bound into it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from leadflow.warehouse.db import get_engine


def test_given_a_failing_insert_then_the_error_text_holds_no_bound_values(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (email TEXT PRIMARY KEY)"))
        conn.execute(text("INSERT INTO people VALUES (:email)"), {"email": "jane.doe@example.com"})
    with pytest.raises(IntegrityError) as info:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO people VALUES (:email)"), {"email": "jane.doe@example.com"})
    assert "jane.doe@example.com" not in str(info.value)
    assert "INSERT INTO people" in str(info.value)
