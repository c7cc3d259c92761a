"""A lock that a forked child gets back free.

A child process has none of its parent's other threads, so a lock one of
them held at the moment of fork() would never be released in the child:
every `ForkSafeLock` is replaced by a fresh one there."""

from __future__ import annotations

import os
import threading
import weakref


class ForkSafeLock:
    """A reentrant lock (`with lock:`), free again in a forked child."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        _LOCKS.add(self)

    def __enter__(self) -> ForkSafeLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exception: object) -> None:
        self._lock.release()

    @property
    def current(self) -> threading.RLock:
        """The lock itself, for hot paths: `with lock.current:` skips this
        class's Python-level __enter__ and __exit__ (~0.5 us a call)."""
        return self._lock


_LOCKS: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def _free_after_fork() -> None:
    for lock in list(_LOCKS):
        lock._lock = threading.RLock()


os.register_at_fork(after_in_child=_free_after_fork)
