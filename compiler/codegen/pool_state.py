"""The thread pool's state, as the code generator (threads.py) and the
runtime (runtime/threads.py) both see it: an array of int64 slots, one
cache line per hot field (threads.py says what each holds). Kept apart
from the code generator so that starting a pool whose code is cached
loads no LLVM."""

from __future__ import annotations

import sys

LINE = 8
"""int64 slots per cache line."""

WORKERS, STOP, LOCK = 0, 1, 2
SEQ = 1 * LINE
TASK, ARGS, COUNT = 2 * LINE, 2 * LINE + 1, 2 * LINE + 2
NEXT = 3 * LINE
DONE = 4 * LINE
ACTIVE = 5 * LINE
SLEEPERS, WAKE, PARK = 6 * LINE, 6 * LINE + 1, 6 * LINE + 2
POOL_SLOTS = 7 * LINE

FUTEXES = sys.platform.startswith("linux")
"""Whether this system's workers sleep on futexes (else they nap)."""
