import pytest

from qwenkit.roleplay.backends import Price
from qwenkit.roleplay.calls import (
    CallCache,
    CallRunner,
    RoleChannel,
    TokenBucket,
    call_key,
    cost_usd,
    derived_seed,
)


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_waits_for_refill():
    clock = FakeClock()
    bucket = TokenBucket(2.0, 2.0, clock=clock, sleep=clock.sleep)
    assert bucket.acquire() == 0 and bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(0.5)
    assert bucket.acquire(10) == pytest.approx(1.0)  # larger than capacity: waits for a full bucket


def test_key_and_seed_are_content_hashes():
    assert call_key({"a": 1, "b": [1, 2]}) == call_key({"b": [1, 2], "a": 1})
    assert call_key({"a": 1}) != call_key({"a": 2})
    assert derived_seed(0, "d1", 3) == derived_seed(0, "d1", 3) != derived_seed(0, "d1", 4)
    assert cost_usd({"prompt_tokens": 1000, "completion_tokens": 500},
                    Price(input_per_mtok=2.0, output_per_mtok=8.0)) == pytest.approx(0.006)


def test_cache_hit_makes_no_call_and_survives_reopen(tmp_path):
    calls = []

    def produce(_backend):
        calls.append(1)
        return {"text": "hi", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}

    channel = RoleChannel(None, {"kind": "x"}, 2, price=Price(input_per_mtok=1e6, output_per_mtok=0))
    cache = CallCache(tmp_path / "calls.sqlite")
    runner = CallRunner(cache, {"judge": channel}, protocol_version=1)
    messages = [{"role": "user", "content": "hello"}]
    first = runner.call("judge", messages, {"seed": 1}, produce)
    assert runner.call("judge", messages, {"seed": 1}, produce) == first
    runner.call("judge", messages, {"seed": 2}, produce)
    assert len(calls) == 2 and runner.usage["judge"].cached == 1 and first["cost_usd"] == pytest.approx(10.0)
    cache.close()
    reopened = CallCache(tmp_path / "calls.sqlite")
    assert len(reopened) == 2 and reopened.total_cost() == pytest.approx(20.0)
    mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
