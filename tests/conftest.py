"""Settings for the whole test session."""

import tqdm

# tqdm starts a monitor thread with the first progress bar (fit's) and wakes
# it every 10 s for the rest of the process. Its allocations land in whatever
# tracemalloc is measuring at that moment (tests/ember/test_native.py's
# per-step allocation probe failed about once in six runs after a fit).
tqdm.tqdm.monitor_interval = 0
