"""loopsite.kept.keep: a per-process copy never holds more than its limit, and always holds what was just kept."""

from loopsite.kept import keep


def test_keep__many_keys__never_more_than_the_limit_and_the_last_one_kept() -> None:
    store: dict[int, str] = {}
    for n in range(25):
        keep(store, n, f"v{n}", limit=4)
        assert len(store) <= 4
        assert store[n] == f"v{n}"


def test_keep__the_same_key_again__replaced() -> None:
    store = {"a": 1}
    keep(store, "a", 2, limit=4)
    assert store == {"a": 2}
