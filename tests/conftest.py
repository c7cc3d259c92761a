"""Settings for the whole test session."""

import atexit
import os
import shutil
import tempfile

import tqdm

# The tests compile many programs: their machine code goes to a cache of
# this session's own, never to the user's (tests of the cache set their own).
_CACHE_DIR = tempfile.mkdtemp(prefix="ember-test-cache-")
os.environ["EMBER_CACHE_DIR"] = _CACHE_DIR
os.environ.pop("EMBER_CACHE", None)
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)

# tqdm starts a monitor thread with the first progress bar (fit's) and wakes
# it every 10 s for the rest of the process. Its allocations land in whatever
# tracemalloc is measuring at that moment (tests/ember/test_native.py's
# per-step allocation probe failed about once in six runs after a fit).
tqdm.tqdm.monitor_interval = 0
