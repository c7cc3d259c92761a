"""Loaded machine code (runtime/jit.py): shared by the programs that use
it, freed with the last of them, loaded from the object code the compile
cache keeps."""

import gc
import weakref

import numpy as np

import ember
import ember.compiler.backend as backend
import ember.compiler.codegen.module as codegen_module
from ember import nn
from ember.runtime import jit


def tiny_model(outputs: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, outputs))


def predict_module(prog: ember.Program) -> jit.JitModule:
    return prog._exec.entry("predict").jit


def test_machine_code_is_shared_while_used_and_freed_with_its_last_program() -> None:
    first, second = ember.compile(tiny_model()), ember.compile(tiny_model())
    module = predict_module(first)
    assert predict_module(second) is module
    engine = weakref.ref(module._engine)  # llvmlite disposes an engine when its object goes
    del first, module
    gc.collect()
    assert engine() is not None, "the second program still runs it"
    del second
    gc.collect()
    assert engine() is None


def test_a_program_compiled_again_loads_the_kept_object_code(monkeypatch) -> None:
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    prog = ember.compile(tiny_model(outputs=4))
    expected = prog.predict(x)
    del prog
    gc.collect()
    calls = []
    for module, name in ((codegen_module, "emit_module"), (backend, "optimize")):
        monkeypatch.setattr(module, name, lambda *args, name=name: calls.append(name))
    again = ember.compile(tiny_model(outputs=4))
    np.testing.assert_array_equal(again.predict(x), expected)
    assert calls == []
