"""Loaded machine code (runtime/jit.py): a shared library where the compile
cache linked one, else object code through LLVM's JIT; shared by the
programs that use it, freed with the last of them, loaded from the code
the compile cache keeps."""

import gc
import os
import weakref

import numpy as np
import pytest

import ember
import ember.compiler.backend as backend
import ember.compiler.codegen.module as codegen_module
from ember import nn
from ember.runtime import jit, object_cache, shared_library


def tiny_model(outputs: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, outputs))


def predict_module(prog: ember.Program) -> jit.JitModule:
    return prog._exec.entry("predict").jit


@pytest.mark.parametrize(("loader", "outputs"), [(shared_library.SharedLibrary, 2), (jit.JitModule, 5)])
def test_machine_code_is_shared_while_used_and_freed_with_its_last_program(monkeypatch, loader, outputs) -> None:
    if loader is jit.JitModule:  # no C compiler to link a library
        monkeypatch.setattr(object_cache, "link", lambda object_code: b"")
    first, second = ember.compile(tiny_model(outputs)), ember.compile(tiny_model(outputs))
    module = predict_module(first)
    assert type(module) is loader
    assert predict_module(second) is module
    # llvmlite disposes an engine when its object goes; a library is unloaded with its object
    freed = weakref.ref(module._engine if loader is jit.JitModule else module)
    del first, module
    gc.collect()
    assert freed() is not None, "the second program still runs it"
    del second
    gc.collect()
    assert freed() is None


def test_a_program_compiled_again_loads_the_kept_object_code(monkeypatch) -> None:
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    prog = ember.compile(tiny_model(outputs=4))
    expected = prog.predict(x)
    del prog
    gc.collect()
    calls = []
    for module, name in ((codegen_module, "emit_module"), (backend, "optimized")):
        monkeypatch.setattr(module, name, lambda *args, name=name: calls.append(name))
    again = ember.compile(tiny_model(outputs=4))
    np.testing.assert_array_equal(again.predict(x), expected)
    assert calls == []


def test_a_library_the_loader_refuses_loads_through_the_jit(monkeypatch) -> None:
    def refuse(library, global_symbols=False):
        raise OSError("undefined symbol: something")

    monkeypatch.setattr(shared_library, "load", refuse)
    x = np.ones((2, 4), np.float32)
    prog = ember.compile(tiny_model(outputs=7))
    assert type(predict_module(prog)) is jit.JitModule
    assert prog.predict(x).shape == (2, 7)


def test_a_forked_child_loads_libraries_of_its_own() -> None:
    """Parent and child write their libraries' files under names of their own."""
    x = np.ones((2, 4), np.float32)
    ember.compile(tiny_model(outputs=8)).predict(x)  # the parent has loaded code before the fork
    pid = os.fork()
    if pid == 0:
        status = 0 if ember.compile(tiny_model(outputs=9)).predict(x).shape == (2, 9) else 1
        os._exit(status)
    assert ember.compile(tiny_model(outputs=10)).predict(x).shape == (2, 10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_link_that_fails_leaves_the_object_code(monkeypatch, tmp_path) -> None:
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(shared_library, "linker", lambda: str(broken))
    assert shared_library.link(b"not an object") == b""
    monkeypatch.setattr(shared_library, "linker", lambda: str(tmp_path / "missing"))
    assert shared_library.link(b"not an object") == b""
