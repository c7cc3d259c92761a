"""The matmul library's functions compiled once per machine
(compiler/shared_code.py, split.split_shared): each cut into a module of its
own whose text does not depend on the program, so a second program (or a
later process, through the disk cache) compiles only its own kernels, and
trains bitwise as the module compiled whole."""

from __future__ import annotations

import re

import llvmlite.binding as llvm
import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.compiler import native, parallel
from ember.compiler.codegen.target import initialize_llvm
from ember.compiler.native import NativeBuild
from ember.compiler.shared_code import SHARED_PREFIX
from ember.compiler.split import split_shared

needs_linker = pytest.mark.skipif(parallel.linker() is None, reason="joining objects needs a C compiler (cc), on Linux")

DEFINED = re.compile(r'^define [^@]*@"([^"]+)"', re.M)


def classifier(hidden: int) -> ember.Program:
    model = nn.Sequential(nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3))
    return ember.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=1e-2), batch_size=8)


def module_text(hidden: int) -> str:
    return classifier(hidden)._native.compiled("train").llvm_ir


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    """An empty disk cache (shared functions are cut only where there is one)."""
    monkeypatch.delenv("EMBER_CACHE", raising=False)
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(parallel.JOBS_VARIABLE, "1")
    ember.clear_cache()


def test_each_shared_function_becomes_a_module_of_its_own_that_the_program_declares(own_cache):
    text = module_text(16)
    program, functions, compiled_before = split_shared(text, SHARED_PREFIX)
    assert compiled_before == []  # an empty cache
    initialize_llvm()
    llvm.parse_assembly(program).verify()
    for name, function in functions.items():
        llvm.parse_assembly(function).verify()
        assert DEFINED.findall(function) == [name]  # one function, defined hidden
        assert name.startswith(SHARED_PREFIX)
        assert re.search(rf'^define hidden [^@]*@"{re.escape(name)}"', function, re.M)
        assert "; ModuleID" not in function  # nothing of the program's
    kept = set(DEFINED.findall(program))
    assert kept | set(functions) == set(DEFINED.findall(text))
    assert not kept & set(functions)
    assert set(functions) <= set(re.findall(r'^declare hidden [^@]*@"([^"]+)"', program, re.M))


def shared_functions(monkeypatch, directory, hidden: int) -> dict[str, str]:
    """The shared functions cut out of classifier(hidden)'s step compiled
    with an empty cache in `directory`, by name."""
    monkeypatch.setenv("EMBER_CACHE_DIR", str(directory))
    ember.clear_cache()
    return split_shared(module_text(hidden), SHARED_PREFIX)[1]


def test_a_shared_function_has_the_same_text_in_every_program(own_cache, monkeypatch, tmp_path):
    """What lets a module that needs a function compiled before only declare it, by name."""
    narrow, wide, wider = (shared_functions(monkeypatch, tmp_path / str(h), h) for h in (16, 24, 32))
    assert set(wide) == set(wider)  # the same register tiles
    assert narrow.keys() & wide.keys()  # the one-vector tile's functions
    for other in (narrow, wider):
        for name in other.keys() & wide.keys():
            assert other[name] == wide[name], name


def test_a_module_without_shared_functions_is_not_cut():
    text = 'target triple = "x86_64-unknown-linux-gnu"\n\ndefine void @"main"()\n{\nentry:\n  ret void\n}\n'
    assert split_shared(text, SHARED_PREFIX) is None


def count_shared_compiles(monkeypatch) -> list[str]:
    """The names of the shared functions this process compiles from now on."""
    compiled: list[str] = []
    original = NativeBuild._object_here

    def counting(self, llvm_ir: str) -> bytes:
        names = DEFINED.findall(llvm_ir)
        if len(names) == 1 and names[0].startswith(SHARED_PREFIX):
            compiled.append(names[0])
        return original(self, llvm_ir)

    monkeypatch.setattr(NativeBuild, "_object_here", counting)
    return compiled


def trained(prog: ember.Program) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    for _ in range(3):
        prog.train_step(rng.standard_normal((8, 12)).astype(np.float32), rng.integers(0, 3, 8))
    return {name: value.copy() for name, value in prog.state_dict().items()}


def test_scalar_math_on_hyperparameters_is_one_shared_function(own_cache):
    """Adam's bias corrections (powers of beta1 and beta2 by the step), which
    every kernel that updates a parameter computes, call one function named
    as shared code, compiled once per machine like the matmul library's."""
    text = module_text(16)
    pow_ = re.escape('@"ember.math.pow.f32.f32"')
    assert len(re.findall(rf"^define [^@]*{pow_}", text, re.M)) == 1
    bodies = re.findall(r'^define [^@]*@"(train_step\.k\d+)[^"]*"(\(.*?^}$)', text, re.M | re.S)
    callers = {kernel for kernel, body in bodies if re.search(rf"call float {pow_}", body)}
    assert len(callers) == 6  # the weight and bias of each of three layers


@needs_linker
def test_a_second_program_compiles_only_its_own_kernels_and_trains_as_one_module(own_cache, monkeypatch, tmp_path):
    classifier(24)._native.compiled("train")
    compiled = count_shared_compiles(monkeypatch)
    second = classifier(32)
    text = second._native.compiled("train").llvm_ir
    assert re.search(rf'^declare [^@]*@"{re.escape(SHARED_PREFIX)}', text, re.M)  # only declared
    assert re.search(r'^declare [^@]*@"ember\.micro\.', text, re.M)  # its microkernels too: the same text
    readable = second.dump("llvm")  # yet the dump defines them, to be read
    assert re.search(r'^define [^@]*@"ember\.micro\.', readable, re.M)
    assert not re.search(rf'^declare [^@]*@"{re.escape(SHARED_PREFIX)}', readable, re.M)
    assert not re.search(rf'^define [^@]*@"{re.escape(SHARED_PREFIX)}', text, re.M)
    assert not second._native.compiled("train").optimized.functions
    assert compiled == []  # every shared function came from the first program's
    cut = trained(second)
    monkeypatch.setattr(parallel, "linker", lambda: None)  # nothing cut: one module
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "whole"))
    ember.clear_cache()
    whole = classifier(32)
    assert not whole._native.compiled("train").optimized.functions
    for name, value in trained(whole).items():
        np.testing.assert_array_equal(cut[name], value)


@needs_linker
def test_a_new_process_takes_the_shared_functions_from_the_disk_cache(own_cache, monkeypatch):
    compiled = count_shared_compiles(monkeypatch)
    trained(classifier(24))
    assert compiled  # an empty cache: compiled here, and stored
    compiled.clear()
    ember.clear_cache()  # as a new process: nothing kept in memory
    trained(classifier(32))
    assert compiled == []


@needs_linker
def test_the_optimized_dump_shows_the_shared_functions_apart(own_cache):
    prog = classifier(16)
    text = prog.dump("llvm-opt")
    count = len(prog._native.compiled("train").optimized.functions)
    assert f"; shared function {count} of {count}" in text
    assert re.search(rf'^define hidden [^@]*@"?{re.escape(SHARED_PREFIX)}', text, re.M)


def test_without_the_disk_cache_a_module_compiles_whole(monkeypatch):
    monkeypatch.setenv("EMBER_CACHE", "0")
    ember.clear_cache()
    prog = classifier(24)
    assert not prog._native.compiled("train").optimized.functions


def test_work_is_dealt_largest_first_to_the_least_loaded_worker():
    texts = ["\n" * lines for lines in (10, 50, 20, 30, 5)]
    shares = parallel.deal(texts, 2)
    assert sorted(i for share in shares for i in share) == list(range(5))
    assert shares == [[1, 0], [3, 2, 4]]  # 60 and 55 lines


@needs_linker
def test_helpers_compile_shared_functions_too(own_cache, monkeypatch, tmp_path):
    monkeypatch.setenv(parallel.JOBS_VARIABLE, "2")
    compiled = count_shared_compiles(monkeypatch)
    prog = classifier(24)
    functions = prog._native.compiled("train").optimized.functions
    assert 0 < len(compiled) < len(functions)  # the helper compiled the others
    cut = trained(prog)
    monkeypatch.setattr(parallel, "linker", lambda: None)
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "whole"))
    ember.clear_cache()
    for name, value in trained(classifier(24)).items():
        np.testing.assert_array_equal(cut[name], value)


@needs_linker
def test_a_module_declaring_shared_functions_that_cannot_be_cut_is_generated_again_whole(own_cache, monkeypatch):
    classifier(24)._native.compiled("train")  # the shared functions are compiled now
    monkeypatch.setattr(native, "split_shared", lambda text, prefix: None)
    prog = classifier(32)
    assert re.search(rf'^define [^@]*@"{re.escape(SHARED_PREFIX)}', prog._native.compiled("train").llvm_ir, re.M)
    trained(prog)  # links and runs
