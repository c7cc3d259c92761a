"""The compiled code a process keeps (runtime/caches.py): `ember.cache_info()`
shows it, `ember.clear_cache()` drops what is kept for reuse, and compiling
and dropping program after program keeps the process's memory flat."""

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ember
import ember.compiler.codegen.module as codegen_module
from ember import nn


def model(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def test_cache_info_counts_what_is_loaded_and_what_is_kept() -> None:
    before = ember.cache_info()
    prog = ember.compile(model(hidden=7))
    prog.predict(np.ones((2, 3), np.float32))
    during = ember.cache_info()
    assert during.loaded == before.loaded + 1
    assert during.loaded_bytes > before.loaded_bytes
    assert during.compiled >= 1
    assert 0 < during.compiled_bytes <= during.limit_bytes
    del prog
    gc.collect()
    after = ember.cache_info()
    assert (after.loaded, after.loaded_bytes) == (before.loaded, before.loaded_bytes)


def test_clear_cache_makes_the_next_compile_start_over(monkeypatch) -> None:
    ember.compile(model(hidden=9))
    assert ember.cache_info().compiled >= 1
    ember.clear_cache(disk=True)
    info = ember.cache_info()
    assert (info.compiled, info.compiled_bytes, info.disk.entries, info.disk.bytes) == (0, 0, 0, 0)
    calls = []
    original = codegen_module.emit_module
    monkeypatch.setattr(codegen_module, "emit_module", lambda *a: calls.append(1) or original(*a))
    ember.compile(model(hidden=9))
    assert calls == [1]


PROGRAMS = 50
TRAINING_EVERY = 10  # a few training programs (train step + predict), the rest predict-only
RSS_GROWTH_MB = 50  # where every module stayed loaded, 50 programs grew it by ~125 MB

CHILD = f"""
import gc
import numpy as np
import ember
from ember import nn, optim

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

x = np.ones((4, 3), np.float32)
for i in range({PROGRAMS}):
    if i % {TRAINING_EVERY} == 0:
        model = nn.Sequential(nn.Linear(3, 4 + i), nn.ReLU(), nn.Linear(4 + i, 2))
        prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1))
        prog.train_step(x, np.zeros(4, np.int64))
    else:  # the cheapest program with a matmul
        prog = ember.compile(nn.Linear(3, 4 + i))
    prog.predict(x)
    del prog
    gc.collect()
    if i == 0:
        first = rss_mb()
print(first, rss_mb(), ember.cache_info().loaded)
"""


@pytest.mark.slow
def test_compiling_and_dropping_many_programs_keeps_memory_flat() -> None:
    """In a fresh process, so other tests' programs do not count: RSS after
    the last of 50 programs is within 50 MB of RSS after the first (it
    grew by ~2.5 MB a program when every module stayed loaded)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    first, last, loaded = done.stdout.split()
    assert int(loaded) == 0
    assert float(last) - float(first) < RSS_GROWTH_MB, f"RSS {first} MB after the first program, {last} MB after all"
