"""Precedence between CRM values and enrichment, field by field (pure, vectorised).

Default: a value already in the CRM wins unless it is empty; per field the settings may say
"enrichment" instead (a found value replaces the CRM's). Each resolved value carries its
source: "crm", the provider that found it ("cache", "reference", "api"), or "none".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadflow.enrich.settings import Precedence

SOURCE_CRM = "crm"
SOURCE_NONE = "none"


def is_empty(values: pd.Series) -> np.ndarray:
    """True where a value is missing, NaN, or text that is blank."""
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        text = _arrow_text(values)
        # Null or nothing left after trimming whitespace.
        length = pc.utf8_length(pc.utf8_trim_whitespace(text))
        return pc.fill_null(pc.equal(length, 0), True).to_numpy(zero_copy_only=False)
    return values.isna().to_numpy()


def choose_sources(
    has_crm: np.ndarray, has_enriched: np.ndarray, precedence: Precedence
) -> tuple[np.ndarray, np.ndarray]:
    """(use the CRM value, use the enriched value) per row: at most one is true. With "crm" the
    CRM value wins where there is one; with "enrichment" an enriched value wins where found."""
    if precedence == "enrichment":
        return has_crm & ~has_enriched, has_enriched
    return has_crm, has_enriched & ~has_crm


def resolve_field(
    crm: pd.Series,
    enriched: pd.Series,
    enriched_source: pd.Series,
    precedence: Precedence = "crm",
) -> tuple[pd.Series, pd.Series]:
    """(value, source) per row for one field.

    `crm` and `enriched` are aligned (same length); `enriched_source` names the provider of
    each enriched value. With precedence "crm" the CRM value is kept unless empty; with
    "enrichment" an available enriched value replaces it.
    """
    use_crm, use_enriched = choose_sources(~is_empty(crm), ~is_empty(enriched), precedence)
    value = _choose(use_crm, crm, use_enriched, enriched)
    source = _choose_labels(use_crm, use_enriched, enriched_source)
    return value.set_axis(crm.index), source.set_axis(crm.index)


def _choose(
    use_a: np.ndarray, a: pd.Series, use_b: np.ndarray, b: pd.Series
) -> pd.Series:
    if pd.api.types.is_numeric_dtype(a.dtype) and pd.api.types.is_numeric_dtype(b.dtype):
        left = a.to_numpy(dtype="float64", na_value=np.nan)
        right = b.to_numpy(dtype="float64", na_value=np.nan)
        return pd.Series(np.where(use_a, left, np.where(use_b, right, np.nan)), dtype="float64")
    left = _arrow_text(a)
    right = _arrow_text(b)
    none = pa.scalar(None, pa.large_string())
    picked = pc.if_else(pa.array(use_a), left, pc.if_else(pa.array(use_b), right, none))
    return pd.Series(picked, dtype="str")


def _choose_labels(use_crm: np.ndarray, use_enriched: np.ndarray, sources: pd.Series) -> pd.Series:
    provider = pc.fill_null(_arrow_text(sources), pa.scalar(SOURCE_NONE, pa.large_string()))
    crm = pa.scalar(SOURCE_CRM, pa.large_string())
    none = pa.scalar(SOURCE_NONE, pa.large_string())
    labels = pc.if_else(pa.array(use_crm), crm, pc.if_else(pa.array(use_enriched), provider, none))
    return pd.Series(labels, dtype="str")


def _arrow_text(values: pd.Series) -> pa.Array:
    arr = pa.array(values.astype("str"), type=pa.large_string(), from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
