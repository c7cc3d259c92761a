"""Compiling a module in parts on several cores (compiler/split.py,
compiler/parallel.py): the cut defines every function once and each part
verifies; a step compiled in parts trains bitwise as the module compiled
whole, loaded by the JIT or from the disk cache's shared library; a helper
that fails leaves its part to this process; without a C compiler nothing
is cut."""

from __future__ import annotations

import re
import sys

import llvmlite.binding as llvm
import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.compiler import parallel
from ember.compiler.codegen.target import initialize_llvm
from ember.compiler.split import split_module
from ember.ir import ConfigError

needs_linker = pytest.mark.skipif(parallel.linker() is None, reason="joining objects needs a C compiler (cc), on Linux")

DEFINED = re.compile(r'^define [^@]*@"([^"]+)"', re.M)


def deep_classifier() -> ember.Program:
    """Seven matmul kernels in its training step: large enough to cut."""
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    return ember.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=1e-2), batch_size=8)


def trained(monkeypatch, jobs: int, disk_cache: bool = False) -> tuple[ember.Program, np.ndarray]:
    if disk_cache:
        monkeypatch.delenv("EMBER_CACHE", raising=False)
    else:
        monkeypatch.setenv("EMBER_CACHE", "0")
    monkeypatch.setenv(parallel.JOBS_VARIABLE, str(jobs))
    ember.clear_cache()
    prog = deep_classifier()
    rng = np.random.default_rng(0)
    for _ in range(3):
        prog.train_step(rng.standard_normal((8, 12)).astype(np.float32), rng.integers(0, 3, 8))
    return prog, prog.predict(np.ones((2, 12), np.float32))


@pytest.fixture(scope="module")
def whole() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The parameters and a prediction of the step compiled in one piece."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        prog, out = trained(monkeypatch, 1)
        assert len(prog._native.compiled("train").optimized.parts) <= 1
        return {name: value.copy() for name, value in prog.state_dict().items()}, out


@pytest.fixture(scope="module")
def module_text() -> str:
    ember.clear_cache()
    return deep_classifier()._native.compiled("train").llvm_ir


def test_the_parts_define_every_function_once_and_call_across_parts_through_hidden_symbols(module_text):
    parts = split_module(module_text, 2)
    assert len(parts) == 2
    initialize_llvm()
    for part in parts:
        llvm.parse_assembly(part).verify()
    defined = [set(DEFINED.findall(part)) for part in parts]
    assert defined[0] | defined[1] == set(DEFINED.findall(module_text))
    assert not defined[0] & defined[1]
    assert {"train_step", "train_step.profile"} <= defined[0]  # the entries stay in part 0
    for here, there in ((0, 1), (1, 0)):
        declared = re.findall(r'^declare hidden void @"([^"]+)"', parts[here], re.M)
        assert set(declared) <= defined[there]
        for name in declared:
            assert re.search(rf'^define hidden void @"{re.escape(name)}"', parts[there], re.M)
    assert re.search(r'^declare hidden void @"train_step\.k\d+"', parts[0], re.M)  # kernels compiled elsewhere
    sizes = [part.count("\n") for part in parts]
    assert max(sizes) < 0.6 * module_text.count("\n")  # about even


def _function(name: str, linkage: str, calls: list[str], lines: int) -> str:
    body = [f'  %"v{i}" = add i64 {i}, 1' for i in range(lines)]
    body += [f'  call void @"{callee}"(ptr %".1")' for callee in calls]
    return f'define {linkage}void @"{name}"(ptr %".1")\n{{\nentry:\n' + "\n".join(body) + "\n  ret void\n}\n"


def test_a_part_calling_an_entry_declares_it_with_its_own_linkage():
    text = '; ModuleID = "m"\ntarget triple = "x86_64-unknown-linux-gnu"\ntarget datalayout = ""\n\n'
    text += _function("main", "", ["big", "small"], 1)
    text += _function("log", "", [], 1)
    text += _function("big", "internal ", ["log"], 50)
    text += _function("small", "internal ", [], 40)
    parts = split_module(text, 2)
    initialize_llvm()
    for part in parts:
        llvm.parse_assembly(part).verify()
    assert 'declare void @"log"(ptr)' in parts[1]
    assert 'declare hidden void @"big"(ptr)' in parts[0]


def test_a_module_that_cannot_be_cut_comes_back_whole(module_text):
    assert split_module(module_text, 1) == [module_text]
    with_data = module_text + '\n@"table" = internal global i64 0\n'
    assert split_module(with_data, 2) == [with_data]


@needs_linker
def test_a_step_compiled_in_parts_trains_as_the_module_compiled_whole(monkeypatch, whole):
    parts, parts_out = trained(monkeypatch, 2)
    assert len(parts._native.compiled("train").optimized.parts) == 2
    assert parts.pass_seconds.get("parallel-llvm", 0) > 0
    np.testing.assert_array_equal(parts.state_dict()["0.weight"], whole[0]["0.weight"])
    np.testing.assert_array_equal(parts.state_dict()["4.bias"], whole[0]["4.bias"])
    np.testing.assert_array_equal(parts_out, whole[1])
    assert "; part 2 of 2" in parts.dump("llvm-opt")
    assert "# part 2 of 2" in parts.dump("asm")


@needs_linker
def test_a_step_compiled_in_parts_is_cached_and_loads_from_the_cache(monkeypatch, tmp_path, whole):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    stored, _ = trained(monkeypatch, 2, disk_cache=True)
    assert stored.pass_seconds.get("parallel-llvm", 0) > 0
    loaded, loaded_out = trained(monkeypatch, 2, disk_cache=True)  # a new compile: from the disk cache
    assert loaded.pass_seconds.get("parallel-llvm", 0) == 0
    assert loaded.pass_seconds.get("llvm-optimize", 0) == 0
    np.testing.assert_array_equal(loaded.state_dict()["0.weight"], whole[0]["0.weight"])
    np.testing.assert_array_equal(loaded_out, whole[1])


@needs_linker
def test_a_helper_that_fails_leaves_its_part_to_this_process(monkeypatch, whole):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # every helper exits at once, with no object
    parts, parts_out = trained(monkeypatch, 2)
    assert len(parts._native.compiled("train").optimized.parts) == 2
    np.testing.assert_array_equal(parts.state_dict()["0.weight"], whole[0]["0.weight"])
    np.testing.assert_array_equal(parts_out, whole[1])


def test_without_a_c_compiler_a_module_compiles_in_one_piece(monkeypatch):
    monkeypatch.setattr(parallel, "linker", lambda: None)
    prog, _ = trained(monkeypatch, 2)
    assert not prog._native.compiled("train").optimized.parts
    assert "parallel-llvm" not in prog.pass_seconds


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_number_of_compile_jobs_is_refused(monkeypatch, value):
    monkeypatch.setenv(parallel.JOBS_VARIABLE, value)
    with pytest.raises(ConfigError, match="EMBER_COMPILE_JOBS"):
        parallel.compile_jobs()
