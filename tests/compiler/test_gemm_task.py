"""The matmul library's task routines (compiler/codegen/gemm_task.py): one per
shape and register tile, whose text depends on nothing else, and which
bring the library functions they call into every program that only
declares them. That the loops compute the right products is test_gemm.py's
business: every matmul there runs through them."""

from __future__ import annotations

import dataclasses
import itertools
import re

import llvmlite.ir as ir
import pytest

from ember.compiler.codegen.gemm_library import GemmLibrary, blocking
from ember.compiler.codegen.gemm_task import TaskShape, task_routine
from ember.compiler.codegen.target import host_target
from ember.ir import DType

HOST = host_target()
PACKINGS = ("rows", "columns", "elements")
BLOCKED = itertools.product((None, "columns", "rows"), PACKINGS, PACKINGS, (False, True), (0, 3))
SHAPES = [TaskShape("blocked", *shape) for shape in BLOCKED]
SHAPES += [TaskShape("dots", None, "", "", False)]
SHAPES += [TaskShape("row", one_row, "", "", False) for one_row in ("columns", "rows")]
CALLED = re.compile(r'call [^\n@]*@"(ember\.gemm\.[^"]+)"')


def routine_text(shape: TaskShape, kc: int, compiled=None) -> tuple[str, ir.Module]:
    module = ir.Module()
    plan = dataclasses.replace(blocking(HOST, DType.float32, None), kc=kc)
    routine = task_routine(GemmLibrary(module, compiled), plan, shape)
    return str(routine), module


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name(blocking(HOST, DType.float32, None)))
def test_a_routine_depends_on_its_name_alone_and_brings_its_callees(shape: TaskShape) -> None:
    text, _ = routine_text(shape, kc=256)
    other, _ = routine_text(shape, kc=512)  # the cache blocking comes in the frame
    assert text == other
    # compiled before: only declared, yet what its object calls is in the module
    declared, module = routine_text(shape, kc=256, compiled=lambda name: name.startswith("ember.gemm.task."))
    assert declared.startswith("declare")
    called = set(CALLED.findall(text))
    assert called, "a task routine calls the library"
    assert called <= {f.name for f in module.functions}


def test_names_tell_the_shapes_apart() -> None:
    plan = blocking(HOST, DType.float32, None)
    names = {shape.name(plan) for shape in SHAPES}
    assert len(names) == len(SHAPES)
    assert all(name.startswith("ember.gemm.task.") and name.endswith(plan.key) for name in names)
