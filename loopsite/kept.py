"""Per-process copies that cannot grow without bound.

Several reads keep what they found in a plain dict of the process (the agent keys, the live configs, the queue's
rows and items, the menu's figures), each entry cheap to make again. ``keep`` is the one way they store: when the
dict already holds ``limit`` entries it is emptied first, so it never holds more than that, and nothing needs
tracking which entry is oldest.
"""

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def keep(store: dict[K, V], key: K, value: V, *, limit: int) -> None:
    """``store[key] = value``, ``store`` forgotten all at once first when it holds ``limit`` entries."""
    if len(store) >= limit:
        store.clear()
    store[key] = value
