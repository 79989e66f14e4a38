"""The first part a push shard diffs and writes alone (`pipeline.push_first_part`) holds records of
that shard only, about `PUSH_FIRST_PART` of them, as `shard_filter` selects them (shard_key modulo
the shard count)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from leadflow.pipeline import PUSH_FIRST_PART, push_first_part


def _selected(shard, shards, keys):
    return {k for k in keys if shard is None or shards <= 1 or k % shards == shard}


@given(shards=st.integers(1, 8), data=st.data(), records=st.integers(0, 12 * PUSH_FIRST_PART),
       keys=st.lists(st.integers(0, 2**31 - 1), unique=True, max_size=300))
def test_given_any_shard_then_its_first_part_holds_records_of_that_shard_only(shards, data, records, keys):
    shard = data.draw(st.integers(0, shards - 1)) if shards > 1 else data.draw(st.sampled_from([None, 0]))
    first = push_first_part(shard, shards, records)
    if first is None:
        assert -(-records // shards) <= PUSH_FIRST_PART
        return
    assert _selected(*first, keys) <= _selected(shard, shards, keys)
    # About PUSH_FIRST_PART of the shard's records: the shard split into that many equal parts.
    assert first[1] % shards == 0 and -(-records // shards) / (first[1] // shards) <= PUSH_FIRST_PART


def test_given_a_shard_of_many_records_then_the_first_part_is_one_of_its_tenths():
    assert push_first_part(None, 1, 100_000) == (0, 10)
    assert push_first_part(2, 8, 1_000_000) == (2, 8 * 13)  # 125,000 a shard: 13 parts of <= 10,000


def test_given_a_small_shard_then_it_is_diffed_in_one():
    assert push_first_part(None, 1, PUSH_FIRST_PART) is None
    assert push_first_part(3, 4, 4 * PUSH_FIRST_PART) is None
