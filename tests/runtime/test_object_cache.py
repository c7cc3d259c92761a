"""Machine code kept on disk between processes (runtime/object_cache.py):
entries are whole or absent, damaged ones are rebuilt, never loaded, the
directory stays under its limit, and processes share it safely."""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.compiler.native import MachineCode
from ember.compiler.symbolic import Poly
from ember.runtime import shared_library
from ember.runtime.object_cache import SUFFIX, ObjectCache, default_cache

KEY = "ab" * 32


def code(size: int = 100, fill: int = 7) -> MachineCode:
    return MachineCode(bytes([fill]) * size, Poly.of("B") * 64 + 128, 4096)


def test_machine_code_round_trips_through_bytes():
    original = code()
    assert MachineCode.from_bytes(original.to_bytes()) == original
    linked = MachineCode(b"object", Poly(), 0, b"library")
    assert MachineCode.from_bytes(linked.to_bytes()) == linked
    with pytest.raises(ValueError, match="shorter than its header"):
        MachineCode.from_bytes(linked.to_bytes()[: -len(b"library") - 1])
    with pytest.raises(ValueError, match="not ember machine code"):
        MachineCode.from_bytes(b"\xff\xff\xff\x7fgarbage")
    in_parts = MachineCode(b"joined", Poly(), 0, b"library", (b"part one", b"part two"))
    assert MachineCode.from_bytes(in_parts.to_bytes()) == in_parts
    with pytest.raises(ValueError, match="shorter than its header"):
        MachineCode.from_bytes(in_parts.to_bytes()[: -len(b"library part two") - 1])


def test_an_entry_reads_back_as_written(tmp_path):
    cache = ObjectCache(tmp_path)
    assert cache.get(KEY) is None
    cache.put(KEY, code())
    assert cache.get(KEY) == code()
    assert [p.name for p in tmp_path.iterdir()] == [KEY + SUFFIX]  # no temporary file left


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # one bit of the code flipped
        lambda data: b"NOTEMBER" + data[8:],  # another file
        lambda data: b"",
    ],
    ids=["truncated", "bit-flip", "magic", "empty"],
)
def test_a_damaged_entry_is_removed_not_loaded(tmp_path, damage):
    cache = ObjectCache(tmp_path)
    cache.put(KEY, code())
    path = tmp_path / (KEY + SUFFIX)
    path.write_bytes(damage(path.read_bytes()))
    assert cache.get(KEY) is None
    assert not path.exists()


def test_an_entry_filed_under_another_key_is_not_loaded(tmp_path):
    cache = ObjectCache(tmp_path)
    cache.put(KEY, code())
    other = "cd" * 32
    (tmp_path / (KEY + SUFFIX)).rename(tmp_path / (other + SUFFIX))
    assert cache.get(other) is None


def test_the_least_recently_used_entries_go_first(tmp_path):
    entry_bytes = len(code(1000).to_bytes()) + 8 + 32 + 64
    cache = ObjectCache(tmp_path, limit_bytes=3 * entry_bytes)
    keys = [f"{i:064x}" for i in range(4)]
    for i, key in enumerate(keys[:3]):
        cache.put(key, code(1000))
        os.utime(tmp_path / (key + SUFFIX), (1000 + i, 1000 + i))
    assert cache.get(keys[0]) is not None  # used now: no longer the oldest
    cache.put(keys[3], code(1000))
    kept = {p.name.removesuffix(SUFFIX) for p in tmp_path.iterdir()}
    assert kept == {keys[0], keys[2], keys[3]}
    assert cache.info().bytes <= cache.limit_bytes


def test_clear_removes_every_entry(tmp_path):
    cache = ObjectCache(tmp_path)
    for i in range(3):
        cache.put(f"{i:064x}", code())
    assert cache.info().entries == 3
    assert cache.clear() == 3
    assert cache.info().entries == 0


def test_a_directory_that_cannot_be_written_warns_once_and_compiles_on(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = ObjectCache(blocker / "cache")
    with pytest.warns(UserWarning, match="compile cache .* is not used"):
        cache.put(KEY, code())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.put(KEY, code())
    assert caught == []  # once is enough
    assert cache.get(KEY) is None


def test_the_environment_chooses_the_directory_and_turns_the_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    assert default_cache().directory == tmp_path
    monkeypatch.setenv("EMBER_CACHE", "0")
    assert default_cache() is None
    monkeypatch.delenv("EMBER_CACHE")
    monkeypatch.setenv("EMBER_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ember.ConfigError, match="EMBER_CACHE_MAX_BYTES"):
        default_cache()


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import ember
    from ember import nn, optim

    model = nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 3))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), seed=1)
    x = np.linspace(-1, 1, 40, dtype=np.float32).reshape(8, 5)
    loss = prog.train_step(x, np.arange(8) % 3)
    print(repr(loss), "codegen" in prog.log.seconds, "llvmlite.binding" in sys.modules)
    """
)
LINKER = shared_library.linker() is not None


def run_children(directory: Path, count: int, **env: str) -> list[tuple[str, bool]]:
    """Run CHILD in `count` processes at once; each one's (loss, whether it
    generated code). A process that generated none loaded no LLVM, where
    the cache holds linked libraries."""
    environment = {**os.environ, "EMBER_CACHE_DIR": str(directory), **env}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=environment)
        for _ in range(count)
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        loss, generated, loaded_llvm = out.split()
        if generated == "False" and LINKER:
            assert loaded_llvm == "False", "a warm process loaded LLVM"
        results.append((loss, generated == "True"))
    return results


def entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".tmp-"))


@pytest.fixture(scope="module")
def child_entries(tmp_path_factory) -> int:
    """The entries CHILD leaves in an empty cache: its training step's, the
    thread pool's module's, and one per matmul library function the step
    calls (compiled once per machine, compiler/shared_code.py)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        ember.clear_cache()
        model = nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 3))
        prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), seed=1)
        return 2 + len(prog._native.compiled("train").optimized.functions)


def test_a_later_process_loads_the_code_instead_of_compiling(tmp_path, child_entries):
    [(loss, generated)] = run_children(tmp_path, 1)
    assert generated
    stored = entries(tmp_path)
    assert len(stored) == child_entries
    [(again, generated)] = run_children(tmp_path, 1)
    assert not generated
    assert again == loss
    assert entries(tmp_path) == stored


def test_processes_compiling_the_same_program_at_once_share_one_entry(tmp_path, child_entries):
    results = run_children(tmp_path, 2)
    assert results[0][0] == results[1][0]
    assert len(entries(tmp_path)) == child_entries
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_corrupted_entry_is_compiled_again(tmp_path, child_entries):
    [(loss, _)] = run_children(tmp_path, 1)
    for path in entries(tmp_path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    [(again, generated)] = run_children(tmp_path, 1)
    assert generated
    assert again == loss
    assert len(entries(tmp_path)) == child_entries  # rewritten, whole
    [(third, generated)] = run_children(tmp_path, 1)
    assert (third, generated) == (loss, False)


def test_with_the_cache_off_nothing_is_written(tmp_path):
    [(_, generated)] = run_children(tmp_path, 1, EMBER_CACHE="0")
    assert generated
    assert not list(tmp_path.iterdir())


def test_cache_info_and_clear_cache_see_the_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    ember.clear_cache()  # compiled earlier in this process: through the disk cache now
    prog = ember.compile(ember.nn.Linear(4, 2))
    prog.predict(np.ones((1, 4), np.float32))
    info = ember.cache_info().disk
    assert info.directory == tmp_path
    assert info.entries >= 1
    assert info.bytes > 0
    ember.clear_cache(disk=True)
    assert ember.cache_info().disk.entries == 0
