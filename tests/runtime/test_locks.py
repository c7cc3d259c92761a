"""ForkSafeLock: a lock held by another thread at fork() is free in the child."""

import os
import threading
import time
import warnings

from ember.runtime.locks import ForkSafeLock


def test_a_lock_held_by_another_thread_is_free_in_a_forked_child() -> None:
    lock = ForkSafeLock()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            pid = os.fork()
        if pid == 0:
            acquired = lock._lock.acquire(timeout=5)
            os._exit(0 if acquired else 1)
        deadline = time.monotonic() + 20
        while not (status := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert status[0], "the child hung"
        assert os.waitstatus_to_exitcode(status[1]) == 0, "the child could not take the lock"
    finally:
        release.set()
        holder.join()


def test_the_lock_is_reentrant() -> None:
    """A Program's method may call another that takes the same lock."""
    lock = ForkSafeLock()
    with lock:
        assert lock._lock.acquire(timeout=1)
        lock._lock.release()
