"""The client-side token bucket, with a fake clock."""

from __future__ import annotations

from amber.kube.ratelimit import TokenBucket


def test_burst_then_qps() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(qps=10, burst=3, clock=lambda: now[0], sleep=sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert abs(bucket.acquire() - 0.1) < 1e-9
    now[0] += 1.0  # idle refills, but never beyond burst
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() > 0


def test_unlimited() -> None:
    bucket = TokenBucket(qps=0, burst=1)
    assert all(bucket.acquire() == 0.0 for _ in range(1000))
