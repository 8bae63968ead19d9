"""The engines' bounded memo: values kept by key, the least recently used evicted first."""

from __future__ import annotations

from lomas_server.engines.memo import BoundedMemo


def test_least_recently_used_goes_first_and_a_read_counts_as_use():
    memo: BoundedMemo[str, int] = BoundedMemo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "a" is now the most recent
    memo.put("c", 3)
    assert "b" not in memo and memo.get("a") == 1 and memo.get("c") == 3
    assert len(memo) == 2
    assert memo.get("missing") is None
    memo.clear()
    assert len(memo) == 0 and not memo
