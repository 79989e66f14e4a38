from __future__ import annotations

import pytest

from leadflow.sandbox.ratelimit import DailyLimiter, RateSpec, SlidingWindowLimiter


def test_parse_accepts_count_per_seconds_and_off():
    assert RateSpec.parse("100/10") == RateSpec(100, 10.0)
    assert RateSpec.parse("600/1m") == RateSpec(600, 60.0)
    assert RateSpec.parse("off") is None


@pytest.mark.parametrize("text", ["100", "a/10", "0/10", "10/0", "-1/5"])
def test_parse_rejects_malformed_spec_naming_it(text):
    with pytest.raises(ValueError, match="rate limit"):
        RateSpec.parse(text)


def test_given_limit_reached_then_refuses_until_oldest_request_leaves_window(clock):
    limiter = SlidingWindowLimiter(RateSpec(3, 10), clock)
    decisions = []
    for _ in range(3):
        decisions.append(limiter.hit("t"))
        clock.advance(1)
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(d.allowed for d in decisions)
    refused = limiter.hit("t")
    assert not refused.allowed and refused.remaining == 0
    assert refused.reset_s == pytest.approx(7.0)
    clock.advance(7.0)  # first hit (t=0) leaves the window at t=10
    assert limiter.hit("t").allowed
    assert not limiter.hit("t").allowed


def test_refused_requests_do_not_extend_the_window(clock):
    limiter = SlidingWindowLimiter(RateSpec(1, 1), clock)
    assert limiter.hit("t").allowed
    for _ in range(50):
        clock.advance(0.01)
        assert not limiter.hit("t").allowed
    clock.advance(0.51)  # just over 1 s after the only counted request
    assert limiter.hit("t").allowed


def test_window_is_rolling_not_fixed(clock):
    limiter = SlidingWindowLimiter(RateSpec(2, 10), clock)
    limiter.hit("t")
    clock.advance(9)
    limiter.hit("t")
    clock.advance(2)  # a fixed window would have reset at t=10 and allowed two more
    assert limiter.hit("t").allowed
    assert not limiter.hit("t").allowed


def test_tokens_are_limited_independently(clock):
    limiter = SlidingWindowLimiter(RateSpec(1, 10), clock)
    assert limiter.hit("a").allowed
    assert limiter.hit("b").allowed
    assert not limiter.hit("a").allowed


def test_daily_limit_resets_at_utc_midnight(clock):
    clock.now = 1_700_006_399.0  # 2023-11-14T23:59:59Z
    daily = DailyLimiter(2, clock)
    assert daily.hit("t").allowed and daily.hit("t").allowed
    assert not daily.hit("t").allowed
    clock.advance(2)
    assert daily.hit("t").remaining == 1
