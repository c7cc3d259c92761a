"""The native matmul (compiler/codegen/gemm.py, gemm_library.py): correct for
every shape and layout, every code path really taken, fused epilogues equal
to the reference interpreter, deterministic across thread counts, and the
blocking derived from the target.

Graphs with symbolic M, N, K are compiled once and run at many sizes. Which
routines a kernel uses is read from the optimized LLVM IR of its task
function and of the library's task routine it calls
(`ember.gemm.pack_b_columns...`): a call that survives optimization is a
path the kernel can take, and the shapes run next to it are chosen so that
it does."""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

import llvmlite.ir as ir
import numpy as np
import pytest
from native_helpers import make_graph, native, tensor

import ember
from ember.compiler.backend import compile_module, object_machine, optimized
from ember.compiler.codegen.gemm import shared_scratch, task_shape
from ember.compiler.codegen.gemm_library import (
    NARROW_TILE,
    TILE,
    TILE_16_REGISTERS,
    Blocking,
    GemmLibrary,
    blocking,
    register_tile,
    tile_rows,
    transpose,
)
from ember.compiler.codegen.gemm_task import TaskShape, task_routine
from ember.compiler.codegen.irutil import I64, PTR, VOID
from ember.compiler.codegen.matmul_schedule import DOT_COLUMNS, SMALL_M, MatmulSchedule, inner_size, schedule_matmul
from ember.compiler.codegen.target import Target, host_target
from ember.compiler.codegen.threads import SEQ
from ember.compiler.fusion import Kernel
from ember.compiler.optimizers import Adam, Scalars
from ember.compiler.plan import KernelProgram
from ember.ir import DType, Graph, Value, interpret
from ember.runtime import threads as pool_threads
from ember.runtime.arena import aligned_empty
from ember.runtime.jit import JitModule
from ember.runtime.native import GraphFunction

F32, F64 = DType.float32, DType.float64
DTYPES = (F32, F64)
EPS = {F32: float(np.finfo(np.float32).eps), F64: float(np.finfo(np.float64).eps)}
HOST = host_target()
TRANSPOSES = list(itertools.product([False, True], repeat=2))
CASES = [(ta, tb, dtype) for dtype in DTYPES for ta, tb in TRANSPOSES]
CASE_IDS = [f"{'T' if ta else 'N'}{'T' if tb else 'N'}-{dtype}" for ta, tb, dtype in CASES]

T = TypeVar("T")

TRANSCENDENTAL_RTOL = {F32: 1e-6 + 4 * EPS[F32], F64: 1e-15 + 4 * EPS[F64]}
"""exp/tanh-based activations: vecmath.py's documented bound plus NumPy's few ulp."""


# -- helpers ------------------------------------------------------------------------


def program(fn: GraphFunction) -> KernelProgram:
    return fn.build.programs[fn.graph.name]


def kernel_storing(fn: GraphFunction, output: str) -> Kernel:
    """The kernel that writes graph output (or update) `output`."""
    plan = program(fn)
    value = plan.graph.outputs.get(output) or plan.graph.updates[output]
    (kernel,) = [k for k in plan.kernels if value in k.stores]
    return kernel


def kernel_plan(kernel: Kernel, target: Target = HOST) -> Blocking:
    """The blocking codegen chooses for a matmul kernel (on this host)."""
    rows, columns = (d if isinstance(d, int) else None for d in kernel.matmul.output.type.shape)
    depth = inner_size(kernel.matmul)
    return blocking(target, kernel.matmul.output.type.dtype, columns, rows, depth if isinstance(depth, int) else None)


def schedule_of(fn: GraphFunction, kernel: Kernel, target: Target = HOST) -> MatmulSchedule:
    """The schedule codegen follows for a matmul kernel of `fn`."""
    schedule = schedule_matmul(program(fn), kernel, target)
    assert schedule.blocking == kernel_plan(kernel, target)
    return schedule


_ROUTINE = r"(?:call|store) [^\n@]*@\"?ember\.(?:gemm\.)?([a-z_.]+?)\.(f32|f64)\.(\d+)x(\d+)x(\d+)\b"


def task_routines(fn: GraphFunction, kernel: Kernel) -> dict[str, set[str]]:
    """The gemm library routines a task of `kernel` still calls once
    optimized: its task function's, those of the library's task routine it
    calls (gemm_task.py, generated again here: a program compiled after
    the library only declares it) and its microkernel ("micro": the one of
    its text, `ember.micro.KEY.HASH`, SharedFunctions.shared), which the task
    hands to the routine: routine name -> keys (`f32.6x2x16`) it calls
    them with."""
    text = fn.build.compiled(fn.graph.name).optimized.llvm_ir
    name = re.escape(f"{program(fn).name}.{kernel.name}.task")
    match = re.search(rf'^define [^\n]*@"?{name}"?\(.*?^}}$', text, re.M | re.S)
    assert match is not None, f"no task function for {kernel}"
    schedule = schedule_matmul(program(fn), kernel, fn.build.target)
    name, routine = task_routine_text(task_shape(kernel, schedule), schedule.blocking, fn.build.target)
    assert re.search(rf'call [^\n@]*@"?{re.escape(name)}"?\(', match.group(0)), f"{kernel} does not call {name}"
    routines: dict[str, set[str]] = {}
    for body in (match.group(0), routine):
        for routine_name, dtype, mr, vectors, lanes in re.findall(_ROUTINE, body):
            if not routine_name.startswith("task."):
                routines.setdefault(routine_name, set()).add(f"{dtype}.{mr}x{vectors}x{lanes}")
    return routines


def task_routine_text(shape: TaskShape, plan: Blocking, target: Target) -> tuple[str, str]:
    """(name, optimized text) of the library's task routine of `shape` on register tile `plan`."""
    module = ir.Module()
    routine = task_routine(GemmLibrary(module), plan, shape)
    routine.linkage = ""  # kept by the optimizer without a caller
    text = str(optimized(str(module), object_machine(target)))
    found = re.search(rf'^define [^\n]*@"?{re.escape(routine.name)}"?\(.*?^}}$', text, re.M | re.S)
    return routine.name, found.group(0)


def rtol(dtype: DType, k: int) -> float:
    """Allowed |C - A@B| relative to |A_i| |B_j| (row and column norms): float64
    tight; float32 about sqrt(K) roundings of the float32 unit."""
    return 1e-12 if dtype is F64 else 1e-5 * math.sqrt(k)


def check_product(
    actual: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    dtype: DType,
    label: str,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> None:
    """`actual` is op(A) @ op(B) (+ bias, then relu) for the logical operands
    `a` [M, K] and `b` [K, N], within `rtol` of NumPy in float64."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    expected = a64 @ b64
    allowed = rtol(dtype, a.shape[1]) * np.outer(np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=0))
    if bias is not None:  # one more rounding, by the sum (relu is 1-Lipschitz)
        expected = expected + bias.astype(np.float64)
        allowed = allowed + 2 * EPS[dtype] * np.abs(expected)
    if relu:
        expected = np.maximum(expected, 0.0)
    assert actual.dtype == dtype.numpy, f"{label}: dtype {actual.dtype}"
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape}, expected {expected.shape}"
    error = np.abs(actual.astype(np.float64) - expected)
    bad = ~(error <= allowed)  # NaN fails too
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise AssertionError(
            f"{label}: {bad.sum()} of {bad.size} elements wrong, first at {(int(i), int(j))}: "
            f"native {actual[i, j]!r}, NumPy {expected[i, j]!r} (allowed {allowed[i, j]:.3g})"
        )


def stored(logical: np.ndarray, transposed: bool) -> np.ndarray:
    """A logical operand as the graph stores it (its transpose, contiguous, when the flag is set)."""
    return np.ascontiguousarray(logical.T if transposed else logical)


def dyadic(rng: np.random.Generator, shape, dtype: DType, top: int = 4, scale: float = 8.0) -> np.ndarray:
    """Small multiples of 1/scale: sums of their products are exact in either
    dtype, so a matmul of them has one right answer whatever the order."""
    return (rng.integers(-top, top + 1, shape) / scale).astype(dtype.numpy)


# -- 1. every small shape, random shapes, all four transposes ------------------------


@functools.cache
def symbolic_matmul(ta: bool, tb: bool, dtype: DType) -> Graph:
    """c = op(a) @ op(b) with symbolic M, N, K: one compile serves every size."""
    a_shape = ("K", "M") if ta else ("M", "K")
    b_shape = ("N", "K") if tb else ("K", "N")
    return make_graph(
        f"matmul_{int(ta)}{int(tb)}_{dtype}",
        {"a": tensor(dtype, a_shape), "b": tensor(dtype, b_shape)},
        lambda bld, v: {"c": bld.matmul(v["a"], v["b"], transpose_a=ta, transpose_b=tb)},
    )


def run_symbolic(ta: bool, tb: bool, dtype: DType, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fn = native(symbolic_matmul(ta, tb, dtype))
    return fn({"a": stored(a, ta), "b": stored(b, tb)}).outputs["c"]


def random_operands(rng: np.random.Generator, m: int, n: int, k: int, dtype: DType) -> tuple[np.ndarray, np.ndarray]:
    a = rng.standard_normal((m, k)).astype(dtype.numpy)
    b = rng.standard_normal((k, n)).astype(dtype.numpy)
    return a, b


@pytest.mark.parametrize(("ta", "tb", "dtype"), CASES, ids=CASE_IDS)
def test_every_shape_up_to_17(ta: bool, tb: bool, dtype: DType) -> None:
    """All 4913 (M, N, K) in 1..17: every edge of the 6- and 8-row tiles, of the one-
    and two-vector panels, and the one-row (matrix-vector) path."""
    rng = np.random.default_rng(100 + CASES.index((ta, tb, dtype)))
    for m, n, k in itertools.product(range(1, 18), repeat=3):
        a, b = random_operands(rng, m, n, k, dtype)
        check_product(run_symbolic(ta, tb, dtype, a, b), a, b, dtype, f"M={m} N={n} K={k}")


EDGE_SHAPES = [
    (300, 1, 300),
    (1, 300, 1),
    (1, 1, 300),
    (300, 300, 1),
    (300, 300, 300),
    (1, 300, 300),
    (300, 1, 1),
    (SMALL_M, 33, 40),
    (SMALL_M + 1, 33, 40),
    (256, 256, 20),  # MC, NC of float32 on a 1 MiB L2 (MC = 252 with 6-row tiles) ...
    (257, 257, 20),  # ... and one past: two row and two column tasks
    (126, 128, 20),
    (127, 129, 20),
    (70, 40, 1100),  # K over KC: partial sums kept in C between blocks
    (5, 33, 1030),
    (1, 20, 1100),
    (200, 17, 513),
    (SMALL_M, 40, 600),  # at most SMALL_M rows, but an A block over MC x KC: packed
]


@pytest.mark.parametrize(("ta", "tb", "dtype"), CASES, ids=CASE_IDS)
def test_random_shapes_up_to_300(ta: bool, tb: bool, dtype: DType) -> None:
    rng = np.random.default_rng(200 + CASES.index((ta, tb, dtype)))
    shapes = [tuple(int(s) for s in rng.integers(1, 301, 3)) for _ in range(40)]
    for m, n, k in shapes + EDGE_SHAPES:
        a, b = random_operands(rng, m, n, k, dtype)
        check_product(run_symbolic(ta, tb, dtype, a, b), a, b, dtype, f"M={m} N={n} K={k}")


STATIC_ROWS = (1, 3, 5, 7, 10, 13, 20)


@functools.cache
def static_rows_graph(dtype: DType) -> Graph:
    """c_{m}_{ta}{tb} = op(a) @ op(b) for each M in STATIC_ROWS known at
    compile time (the weight gradient dY.T @ X of a layer with M outputs):
    its tile height fits M (tile_rows). N and K symbolic."""

    def build(bld, v):
        outputs = {}
        for m, ta, tb in itertools.product(STATIC_ROWS, (False, True), (False, True)):
            a = v[f"a{m}_{int(ta)}"]
            outputs[f"c{m}_{int(ta)}{int(tb)}"] = bld.matmul(a, v[f"b_{int(tb)}"], transpose_a=ta, transpose_b=tb)
        return outputs

    inputs = {"b_0": tensor(dtype, ("K", "N")), "b_1": tensor(dtype, ("N", "K"))}
    for m in STATIC_ROWS:
        inputs[f"a{m}_0"], inputs[f"a{m}_1"] = tensor(dtype, (m, "K")), tensor(dtype, ("K", m))
    return make_graph(f"static_rows_{dtype}", inputs, build)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_known_row_counts_get_fitting_tiles(dtype: DType) -> None:
    """A compile-time M picks its tile height; every edge, K over KC and both
    transposes stay right."""
    fn = native(static_rows_graph(dtype))
    heights = {m: kernel_plan(kernel_storing(fn, f"c{m}_00")).mr for m in STATIC_ROWS}
    assert heights == {m: tile_rows(m, *register_tile(HOST)) for m in STATIC_ROWS}, heights
    assert (heights[1], heights[10]) == (1, 5), heights
    tens = kernel_storing(fn, "c10_10")  # dY.T @ X of a 10-class layer: two tiles of 5 rows
    assert task_routines(fn, tens)["micro"] == {kernel_plan(tens).key}
    rng = np.random.default_rng(11)
    for n, k in ((1, 1), (17, 9), (40, 600)):
        args = random_arguments(fn, {"N": n, "K": k}, rng)
        out = fn(args).outputs
        for m, ta, tb in itertools.product(STATIC_ROWS, (False, True), (False, True)):
            a, b = args[f"a{m}_{int(ta)}"], args[f"b_{int(tb)}"]
            label = f"M={m} N={n} K={k} ta={ta} tb={tb}"
            check_product(out[f"c{m}_{int(ta)}{int(tb)}"], a.T if ta else a, b.T if tb else b, dtype, label)


def test_tile_height_is_the_fastest_by_its_estimate() -> None:
    """tile_rows: unknown M keeps the tile's height; a known M gets the
    height of least tiles x (height + vectors), never taller than the tile."""
    for mr, vectors in (TILE, TILE_16_REGISTERS, NARROW_TILE):
        assert tile_rows(None, mr, vectors) == mr
        for m in range(1, 300):
            height = tile_rows(m, mr, vectors)
            assert 1 <= height <= mr, (m, height)
            cost = -(-m // height) * (height + vectors)
            assert all(cost <= -(-m // h) * (h + vectors) for h in range(1, mr + 1)), (m, height)
    assert [tile_rows(m, *TILE_16_REGISTERS) for m in (7, 10, 12, 13, 64, 256)] == [4, 5, 6, 5, 6, 6]
    assert [tile_rows(m, *TILE) for m in (7, 10, 12, 13, 64, 256)] == [7, 5, 6, 7, 8, 8]
    # outputs at most one vector wide keep 12 rows: dot products fill them with blocks of 4 (11 ran 15% slower)
    assert blocking(HOST, F32, HOST.lanes(F32), 64).mr == NARROW_TILE[0]
    assert blocking(HOST, F32, HOST.lanes(F32) + 1, 64).mr == tile_rows(64, *register_tile(HOST))


def test_operands_are_not_modified_and_output_is_fresh() -> None:
    """Packing reads the operands only; each call returns a new array."""
    rng = np.random.default_rng(1)
    a, b = random_operands(rng, 300, 70, 600, F32)
    a_copy, b_copy = a.copy(), b.copy()
    fn = native(symbolic_matmul(False, False, F32))
    first = fn({"a": a, "b": b}).outputs["c"]
    second = fn({"a": a, "b": b}).outputs["c"]
    np.testing.assert_array_equal(a, a_copy)
    np.testing.assert_array_equal(b, b_copy)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, second)
    check_product(first, a, b, F32, "300x70x600")


# -- 2. the code paths of static shapes ------------------------------------------------

LANES = HOST.lanes(F32)
NARROW_WIDTHS = (1, max(2, LANES - 6), LANES)
"""Outputs at most one float32 vector wide (1, 10 and 16 with AVX-512)."""


@functools.cache
def narrow_graph() -> Graph:
    one, mid, full = NARROW_WIDTHS
    lanes64 = HOST.lanes(F64)

    def build(b, v):
        return {
            "narrow_1": b.matmul(v["x"], v["w_1"]),
            "narrow_mid": b.matmul(v["x"], v["w_mid"], transpose_b=True),
            "narrow_full": b.relu(b.add(b.matmul(v["x"], v["w_full"]), v["b_full"])),
            "wide": b.matmul(v["x"], v["w_wide"]),
            "narrow_f64": b.matmul(v["x64"], v["w64"]),
        }

    inputs = {
        "x": tensor(F32, ("M", 40)),
        "w_1": tensor(F32, (40, one)),
        "w_mid": tensor(F32, (mid, 40)),
        "w_full": tensor(F32, (40, full)),
        "b_full": tensor(F32, (full,)),
        "w_wide": tensor(F32, (40, LANES + 1)),
        "x64": tensor(F64, ("M", 40)),
        "w64": tensor(F64, (40, lanes64)),
    }
    return make_graph("narrow", inputs, build)


def test_outputs_one_vector_wide_use_the_narrow_tile() -> None:
    """...and those whose B columns are contiguous (x @ W.T, or one column)
    run as dot products along k instead."""
    fn = native(narrow_graph())
    for name in ("narrow_1", "narrow_mid", "narrow_full", "narrow_f64", "wide"):
        kernel = kernel_storing(fn, name)
        plan = kernel_plan(kernel)
        expected = register_tile(HOST) if name == "wide" else NARROW_TILE
        assert (plan.mr, plan.vectors) == expected, name
        routines = task_routines(fn, kernel)
        assert routines["dots" if name in ("narrow_1", "narrow_mid") else "micro"] == {plan.key}, name

    rng = np.random.default_rng(2)
    mc = kernel_plan(kernel_storing(fn, "narrow_1")).mc
    rows = (1, 5, 12, 13, SMALL_M, SMALL_M + 1, mc + 1, 300)
    assert max(rows) > mc  # several row tasks
    for m in rows:
        args = random_arguments(fn, {"M": m}, rng)
        out = fn(args).outputs
        x, x64 = args["x"], args["x64"]
        check_product(out["narrow_1"], x, args["w_1"], F32, f"N=1 M={m}")
        check_product(out["narrow_mid"], x, args["w_mid"].T, F32, f"N={NARROW_WIDTHS[1]} M={m}")
        full = out["narrow_full"]
        check_product(full, x, args["w_full"], F32, f"relu N={LANES} M={m}", bias=args["b_full"], relu=True)
        check_product(out["wide"], x, args["w_wide"], F32, f"N={LANES + 1} M={m}")
        check_product(out["narrow_f64"], x64, args["w64"], F64, f"f64 M={m}")


VECTOR_BITS = sorted({256, HOST.vector_bits})
"""Register widths the host can run: its own, and AVX2's (fewer registers,
so a smaller dot-product block)."""


@pytest.mark.parametrize("vector_bits", VECTOR_BITS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", [1, 3, 17, 40, 300])
def test_narrow_products_with_a_transposed_weight_are_dot_products(k: int, dtype: DType, vector_bits: int) -> None:
    """Every output width up to DOT_COLUMNS, every row count around the dot
    block, depths with and without a tail of partial vectors; and a wider
    output, whose single rows take the one-row dot products."""
    narrow = (1, 3, 10, DOT_COLUMNS)
    widths = (*narrow, 40)

    def build(b, v):
        return {f"n{n}": b.matmul(v["x"], v[f"w{n}"], transpose_b=True) for n in widths}

    inputs = {"x": tensor(dtype, ("M", k))} | {f"w{n}": tensor(dtype, (n, k)) for n in widths}
    graph = make_graph(f"dots{k}", inputs, build)
    fn = GraphFunction(graph, target=dataclasses.replace(HOST, vector_bits=vector_bits))
    for n in widths:
        routines = task_routines(fn, kernel_storing(fn, f"n{n}"))
        assert ("dots" in routines) == (n in narrow), n
    assert "gemv_columns" in task_routines(fn, kernel_storing(fn, "n40"))
    rng = np.random.default_rng(k)
    for m in (1, 2, 3, 4, 5, 7, 9, 12, 13, 64):
        args = random_arguments(fn, {"M": m}, rng)
        out = fn(args).outputs
        for n in widths:
            check_product(out[f"n{n}"], args["x"], args[f"w{n}"].T, dtype, f"M={m} N={n} K={k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_one_row_products_read_weights_at_any_alignment(dtype: DType) -> None:
    """The one-row routines start their whole vectors on a vector boundary
    of the weight (a masked head first): weights at every element offset
    from a 64-byte line give the same products (narrow dot products too),
    and the head's masked lanes stay untouched (x = inf gives inf, not NaN)."""
    lanes = HOST.lanes(dtype)

    def build(b, v):
        return {
            "rows": b.matmul(v["x"], v["w_rows"]),
            "columns": b.matmul(v["x"], v["w_columns"], transpose_b=True),
            "dots": b.matmul(v["x"], v["w_dots"], transpose_b=True),
        }

    shapes = {"w_rows": (64, 48), "w_columns": (48, 64), "w_dots": (10, 64)}
    inputs = {"x": tensor(dtype, ("M", 64))} | {name: tensor(dtype, shape) for name, shape in shapes.items()}
    fn = native(make_graph(f"aligned_{dtype}", inputs, build))
    rng = np.random.default_rng(11)
    for offset in range(lanes):
        args = {"x": rng.standard_normal((1, 64)).astype(dtype.numpy)}
        for name, shape in shapes.items():
            buffer = aligned_empty(int(np.prod(shape)) + lanes, dtype.numpy)
            args[name] = buffer[offset : offset + int(np.prod(shape))].reshape(shape)
            args[name][...] = rng.uniform(0.5, 1.0, shape)
        out = fn(args).outputs
        check_product(out["rows"], args["x"], args["w_rows"], dtype, f"rows offset={offset}")
        check_product(out["columns"], args["x"], args["w_columns"].T, dtype, f"columns offset={offset}")
        check_product(out["dots"], args["x"], args["w_dots"].T, dtype, f"dots offset={offset}")
        args["x"][0, 5] = np.inf
        out = fn(args).outputs
        for name in ("rows", "columns", "dots"):
            assert np.isposinf(out[name]).all(), f"{name} offset={offset}: {out[name]}"


def _arguments(fn: GraphFunction) -> dict[str, Value]:
    return {a.name: a for a in fn.graph.arguments}


def random_arguments(fn: GraphFunction, sizes: Mapping[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard normal values for every argument of `fn`'s graph, in its dtype."""
    return {
        a.name: rng.standard_normal(a.type.concrete_shape(sizes)).astype(a.type.dtype.numpy) for a in fn.graph.arguments
    }


DEEP = {
    # output: (K, N, dtype, where partial sums live)
    "stored": (1100, 40, F32, "output"),
    "stored_narrow": (1100, NARROW_WIDTHS[1], F32, "output"),
    "relu": (1100, 40, F32, "scratch"),
    "stored_2100": (2100, 24, F32, "output"),
    "relu_narrow_2100": (2100, NARROW_WIDTHS[1], F32, "scratch"),
    "relu_dots_2100": (2100, NARROW_WIDTHS[1], F32, None),
    "stored_f64": (1100, 20, F64, "output"),
    "relu_f64": (1100, 20, F64, "scratch"),
}
"""K over KC, with C stored (partial sums in C) or only an epilogue result
stored (partial sums in the shared scratch). The relu outputs are linear
layers, relu(x @ W.T + b), except the narrow one, relu(x @ W + b): a
narrow x @ W.T runs as dot products over the whole depth (no partial sums)."""


def deep_transposed(name: str) -> bool:
    return name.startswith("relu") and name != "relu_narrow_2100"


@functools.cache
def deep_graph() -> Graph:
    def build(b, v):
        outputs = {}
        for name, (k, _, dtype, _) in DEEP.items():
            x = v[f"x{k}_{dtype}"]
            if name.startswith("relu"):
                product = b.matmul(x, v[f"w_{name}"], transpose_b=deep_transposed(name))
                outputs[name] = b.relu(b.add(product, v[f"b_{name}"]))
            else:
                outputs[name] = b.matmul(x, v[f"w_{name}"])
        return outputs

    inputs = {}
    for name, (k, n, dtype, _) in DEEP.items():
        inputs[f"x{k}_{dtype}"] = tensor(dtype, ("M", k))
        inputs[f"w_{name}"] = tensor(dtype, (n, k) if deep_transposed(name) else (k, n))
        if name.startswith("relu"):
            inputs[f"b_{name}"] = tensor(dtype, (n,))
    return make_graph("deep", inputs, build)


def run_deep(rng: np.random.Generator, m: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    fn = native(deep_graph())
    args = random_arguments(fn, {"M": m}, rng)
    return args, fn(args).outputs


def check_deep(args: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray], label: str) -> None:
    for name, (k, _, dtype, _) in DEEP.items():
        x, w = args[f"x{k}_{dtype}"], args[f"w_{name}"]
        w = w.T if deep_transposed(name) else w
        if name.startswith("relu"):
            check_product(out[name], x, w, dtype, f"{name} {label}", bias=args[f"b_{name}"], relu=True)
        else:
            check_product(out[name], x, w, dtype, f"{name} {label}")


def test_depth_over_kc_keeps_partial_sums_in_c_or_in_scratch() -> None:
    fn = native(deep_graph())
    compiled = fn.build.compiled("deep")
    for name, (k, n, dtype, where) in DEEP.items():
        kernel = kernel_storing(fn, name)
        plan = kernel_plan(kernel)
        assert k > plan.kc, f"{name}: K={k} fits one block of {plan.kc}"
        assert schedule_of(fn, kernel).partial_sums == where, name
        routines = task_routines(fn, kernel)
        moves = {"tile_load", "tile_store"} & routines.keys()
        assert moves == (set() if where is None else {"tile_load", "tile_store"}), f"{name}: {sorted(routines)}"
        needed = shared_scratch(kernel, schedule_of(fn, kernel)).evaluate({"M": 300})
        assert needed == (300 * n * dtype.itemsize if where == "scratch" else 0), name
        assert compiled.scratch_bytes.evaluate({"M": 300}) >= needed

    rng = np.random.default_rng(3)
    for m in (1, 3, SMALL_M, SMALL_M + 1, 260):
        args, out = run_deep(rng, m)
        check_deep(args, out, f"M={m}")


@functools.cache
def layouts_graph() -> Graph:
    """Every operand layout a matmul reads (float32, K = 40, N = 36, M symbolic)."""

    def build(b, v):
        x, xt, w, wt = v["x"], v["xt"], v["w"], v["wt"]
        return {
            "nn": b.matmul(x, w),
            "a_transposed": b.matmul(xt, w, transpose_a=True),
            "a_transpose_op": b.matmul(b.transpose(xt, perm=[1, 0]), w),
            "b_transposed": b.matmul(x, wt, transpose_b=True),
            "both_transposed": b.matmul(xt, wt, transpose_a=True, transpose_b=True),
            "b_transpose_of_reshape": b.matmul(x, b.transpose(b.reshape(v["flat"], shape=[36, 40]), perm=[1, 0])),
            "b_broadcast_column": b.matmul(x, b.broadcast_to(v["column"], shape=[40, 36])),
            "b_broadcast_row": b.matmul(x, b.broadcast_to(v["row"], shape=[40, 36])),
            "b_broadcast_scalar": b.matmul(x, b.broadcast_to(v["scalar"], shape=[40, 36])),
            "a_broadcast_row": b.matmul(b.broadcast_to(v["a_row"], shape=["M", 40]), w),
            "a_broadcast_scalar": b.matmul(b.broadcast_to(v["scalar"], shape=["M", 40]), w),
        }

    inputs = {
        "x": tensor(F32, ("M", 40)),
        "xt": tensor(F32, (40, "M")),
        "w": tensor(F32, (40, 36)),
        "wt": tensor(F32, (36, 40)),
        "flat": tensor(F32, (36 * 40,)),
        "column": tensor(F32, (40, 1)),
        "row": tensor(F32, (1, 36)),
        "scalar": tensor(F32, (1, 1)),
        "a_row": tensor(F32, (1, 40)),
    }
    return make_graph("layouts", inputs, build)


LAYOUT_ROUTINES = {
    # output: (routines its task must call, routines it must not)
    "nn": ({"pack_a_rows", "pack_b_rows", "micro.masked"}, {"pack_a_elements", "pack_b_columns", "pack_b_elements"}),
    "a_transposed": ({"pack_a_columns", "pack_b_rows", "micro"}, {"pack_a_rows", "pack_a_elements"}),
    "a_transpose_op": ({"pack_a_columns", "pack_b_rows", "micro"}, {"pack_a_rows", "pack_a_elements"}),
    "b_transposed": ({"pack_b_columns", "pack_a_rows"}, {"pack_b_rows", "pack_b_elements"}),
    "both_transposed": (
        {"pack_a_columns", "pack_b_columns", "micro"},
        {"pack_a_rows", "pack_a_elements", "pack_b_elements"},
    ),
    "b_transpose_of_reshape": ({"pack_b_columns"}, {"pack_b_rows", "pack_b_elements"}),
    "b_broadcast_column": ({"pack_b_columns"}, {"pack_b_rows", "pack_b_elements"}),
    "b_broadcast_row": ({"pack_b_rows", "micro.masked"}, {"pack_b_columns", "pack_b_elements"}),
    "b_broadcast_scalar": ({"pack_b_elements"}, {"pack_b_rows", "pack_b_columns", "micro.masked"}),
    "a_broadcast_row": ({"pack_a_rows"}, {"pack_a_elements"}),
    "a_broadcast_scalar": ({"pack_a_elements"}, {"pack_a_rows"}),
}


def layout_operands(args: Mapping[str, np.ndarray], m: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The logical (A, B) of each output of `layouts_graph`, in NumPy."""
    x, xt, w, wt = args["x"], args["xt"], args["w"], args["wt"]
    b_reshaped = args["flat"].reshape(36, 40).T
    return {
        "nn": (x, w),
        "a_transposed": (xt.T, w),
        "a_transpose_op": (xt.T, w),
        "b_transposed": (x, wt.T),
        "both_transposed": (xt.T, wt.T),
        "b_transpose_of_reshape": (x, b_reshaped),
        "b_broadcast_column": (x, np.broadcast_to(args["column"], (40, 36))),
        "b_broadcast_row": (x, np.broadcast_to(args["row"], (40, 36))),
        "b_broadcast_scalar": (x, np.broadcast_to(args["scalar"], (40, 36))),
        "a_broadcast_row": (np.broadcast_to(args["a_row"], (m, 40)), w),
        "a_broadcast_scalar": (np.broadcast_to(args["scalar"], (m, 40)), w),
    }


LAYOUT_SCHEDULES = {
    # output: (pack_a, pack_b, B read in place for small blocks, one-row routine)
    "nn": ("rows", "rows", True, "rows"),
    "a_transposed": ("columns", "rows", True, "rows"),
    "a_transpose_op": ("columns", "rows", True, "rows"),
    "b_transposed": ("rows", "columns", False, "columns"),
    "both_transposed": ("columns", "columns", False, None),
    "b_transpose_of_reshape": ("rows", "columns", False, "columns"),
    "b_broadcast_column": ("rows", "columns", False, "columns"),
    "b_broadcast_row": ("rows", "rows", True, "rows"),
    "b_broadcast_scalar": ("rows", "elements", False, None),
    "a_broadcast_row": ("rows", "rows", True, "rows"),
    "a_broadcast_scalar": ("elements", "rows", True, "rows"),
}


def test_each_operand_layout_gets_its_schedule() -> None:
    """The schedule records how each layout is read: the emitter follows it
    (the routines each task calls, below, are the same decisions in code)."""
    fn = native(layouts_graph())
    assert set(LAYOUT_SCHEDULES) == set(fn.graph.outputs)
    for name, (pack_a, pack_b, b_in_place, one_row) in LAYOUT_SCHEDULES.items():
        schedule = schedule_of(fn, kernel_storing(fn, name))
        got = (schedule.pack_a, schedule.pack_b, schedule.b_in_place, schedule.one_row)
        assert got == (pack_a, pack_b, b_in_place, one_row), name
        assert not schedule.dots
        assert schedule.partial_sums is None  # K = 40 fits one block


def test_an_mlp_step_shows_each_matmul_schedule_in_the_kernels_dump() -> None:
    """Forward x @ W.T packs W by columns, a 10-class output layer runs as dot
    products, weight gradients dY.T @ X read dY in place; the kernels dump
    prints every matmul's schedule under its header."""
    model = ember.nn.Sequential(ember.nn.Linear(2100, 64), ember.nn.ReLU(), ember.nn.Linear(64, 10))
    prog = ember.compile(model, loss=ember.nn.CrossEntropyLoss(), optimizer=ember.optim.SGD(lr=0.1))
    build = prog._native
    kernels = build.programs["train"].kernels
    schedules = {k.name: schedule_matmul(build.programs["train"], k, build.target) for k in kernels if k.matmul}
    forward, logits = (schedules[k.name] for k in kernels[:2])
    assert (forward.dots, forward.pack_b, forward.one_row) == (False, "columns", "columns")
    # K = 2100 takes more than one block of at most 1024 (deep_block); the
    # kernel stores relu(xW.T + b), not xW.T, so partial sums go to scratch
    assert forward.partial_sums == "scratch"
    assert logits.dots
    weight_gradients = [schedules[k.name] for k in kernels if k.matmul and k.domain[0] != "B"]
    assert weight_gradients
    assert all(s.pack_a == "columns" for s in weight_gradients)
    dump = prog.dump("kernels").splitlines()
    for name, schedule in schedules.items():
        header = next(i for i, line in enumerate(dump) if line.startswith(f"{name}: matmul"))
        assert dump[header + 1] == f"  schedule: {schedule.describe()}"


def test_each_operand_layout_takes_its_packing_path() -> None:
    """A read in place when stored transposed, else packed by rows (or element
    by element); B in place or packed by rows, by columns (a transposed
    weight, transposing in registers) or element by element."""
    fn = native(layouts_graph())
    assert set(LAYOUT_ROUTINES) == set(fn.graph.outputs)
    mc = 0
    for name, (present, absent) in LAYOUT_ROUTINES.items():
        kernel = kernel_storing(fn, name)
        assert kernel.kind == "matmul", f"{name}: {kernel}"
        mc = max(mc, kernel_plan(kernel).mc)
        routines = task_routines(fn, kernel).keys()
        assert present <= routines, f"{name}: calls {sorted(routines)}, missing {sorted(present - routines)}"
        assert not absent & routines, f"{name}: calls {sorted(absent & routines)}"

    rng = np.random.default_rng(4)
    rows = (1, 2, 6, SMALL_M, SMALL_M + 1, mc + 7)  # in place up to SMALL_M rows, packed above
    for m in rows:
        args = random_arguments(fn, {"M": m}, rng)
        out = fn(args).outputs
        for name, (a, b) in layout_operands(args, m).items():
            check_product(out[name], a, b, F32, f"{name} M={m}")


# -- 3. fused epilogues against the reference interpreter --------------------------------

ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "gelu")
EPILOGUE_N = 37


@functools.cache
def epilogue_graph(dtype: DType) -> Graph:
    """One matmul kernel per epilogue, M and K symbolic (K over KC takes the
    partial sums through the shared scratch, as only the epilogue is stored)."""

    def build(b, v):
        def mm(weight: str) -> Value:
            return b.matmul(v["x"], v[weight])

        outputs = {"bias": b.add(mm("w_bias"), v["b_bias"])}
        for act in ACTIVATIONS:
            outputs[act] = b.emit(act, b.add(mm(f"w_{act}"), v[f"b_{act}"]))
        outputs["mask"] = b.select(b.gt(v["h"], 0.0), b.matmul(v["dy"], v["w_mask"]), 0.0)
        outputs["scaled"] = b.mul(mm("w_scaled"), v["s"])
        outputs["accumulated"] = b.add(mm("w_accumulated"), v["c0"])
        return outputs

    mk, kn, mn = ("M", "K"), ("K", EPILOGUE_N), ("M", EPILOGUE_N)
    inputs = {"x": tensor(dtype, mk), "dy": tensor(dtype, mk), "h": tensor(dtype, mn), "c0": tensor(dtype, mn)}
    inputs["s"] = tensor(dtype, ())
    for name in ("bias", *ACTIVATIONS, "mask", "scaled", "accumulated"):
        inputs[f"w_{name}"] = tensor(dtype, kn)
    for name in ("bias", *ACTIVATIONS):
        inputs[f"b_{name}"] = tensor(dtype, (EPILOGUE_N,))
    return make_graph(f"epilogues_{dtype}", inputs, build)


EPILOGUE_SIZES = [
    (1, 1),
    (1, 19),
    (2, 19),
    (7, 19),
    (13, 600),
    (25, 19),  # 25, 26, 49: one or two rows left after whole tiles of 8 (or 6), for the one-row routine
    (26, 600),
    (49, 600),
    (70, 600),
    (130, 1100),
    (300, 40),
]
"""(M, K) of the fused epilogues' check."""

EXACT_EPILOGUES = ("bias", "relu", "leaky_relu", "mask", "scaled", "accumulated")
"""With dyadic operands the matmul is exact in both backends, and so are these
epilogues (leaky_relu's one product rounds the same way in both)."""


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_epilogues_match_the_interpreter(dtype: DType) -> None:
    graph = epilogue_graph(dtype)
    fn = native(graph)
    plan = program(fn)
    assert len(plan.kernels) == len(graph.outputs)  # each epilogue fused into its matmul
    for name in graph.outputs:
        kernel = kernel_storing(fn, name)
        assert kernel.kind == "matmul", name
        assert kernel.stores == [plan.graph.outputs[name]], f"{name}: the matmul result itself is stored"
        assert schedule_of(fn, kernel).partial_sums == "scratch", name

    rng = np.random.default_rng(5)
    for m, k in EPILOGUE_SIZES:
        sizes = {"M": m, "K": k}
        args = {name: dyadic(rng, a.type.concrete_shape(sizes), dtype) for name, a in _arguments(fn).items()}
        args["h"] = rng.standard_normal((m, EPILOGUE_N)).astype(dtype.numpy)  # no zeros: the mask is sure
        args["s"] = np.array(0.75, dtype.numpy)
        args["c0"] = dyadic(rng, (m, EPILOGUE_N), dtype, top=16, scale=16.0)
        actual = fn(args).outputs
        expected = interpret(graph, args).outputs
        for name in EXACT_EPILOGUES:
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=f"{name} M={m} K={k}")
        assert (actual["mask"][args["h"] <= 0] == 0).all()
        for act in ("sigmoid", "tanh", "gelu"):
            h = args["x"].astype(np.float64) @ args[f"w_{act}"] + args[f"b_{act}"]
            allowed = TRANSCENDENTAL_RTOL[dtype] * (np.abs(expected[act]) + 0.5 * np.abs(h)) + 1e-300
            error = np.abs(actual[act].astype(np.float64) - expected[act])
            assert actual[act].dtype == dtype.numpy
            assert (error <= allowed).all(), f"{act} M={m} K={k}: max error {error.max():.3g}"


@functools.cache
def adam_graph(dtype: DType) -> Graph:
    """g = x.T @ dy (inner dimension: the batch B) finished by an Adam update
    of p and its state, and accumulated into `acc`: five stores of one tile."""

    def build(b, v):
        g = b.matmul(v["x"], v["dy"], transpose_a=True)
        step = b.add(v["step"], 1.0)
        state = {"exp_avg": v["m"], "exp_avg_sq": v["v"]}
        p, new = Adam().update(b, Scalars(v["lr"], step), v["p"], g, state)
        updates = {"p": p, "m": new["exp_avg"], "v": new["exp_avg_sq"], "acc": b.add(v["acc"], g), "step": step}
        return {}, updates

    shape = (20, EPILOGUE_N)
    inputs = {"x": tensor(dtype, ("B", 20)), "dy": tensor(dtype, ("B", EPILOGUE_N)), "lr": tensor(dtype, ())}
    state = {"m": tensor(dtype, shape), "v": tensor(dtype, shape), "acc": tensor(dtype, shape)}
    state["step"] = tensor(dtype, ())
    return make_graph(f"adam_epilogue_{dtype}", inputs, build, params={"p": tensor(dtype, shape)}, state=state)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_adam_update_as_a_matmul_epilogue(dtype: DType) -> None:
    graph = adam_graph(dtype)
    fn = native(graph)
    plan = program(fn)
    lowered = plan.graph
    (kernel,) = [k for k in plan.kernels if k.kind == "matmul"]
    assert set(kernel.stores) == {lowered.updates[n] for n in ("p", "m", "v", "acc")}
    assert not plan.is_stored(kernel.matmul.output)  # the gradient never reaches memory
    for name in ("p", "m", "v", "acc"):
        assert plan.buffers[lowered.updates[name]] == plan.buffers[lowered.argument(name)], f"{name} not in place"
    assert schedule_of(fn, kernel).partial_sums == "scratch"

    rng = np.random.default_rng(6)
    tol = {F32: (1e-5, 1e-6), F64: (1e-12, 1e-14)}[dtype]
    for batch in (1, 3, 70, 600, 1100):  # 600 and 1100: the batch spans several KC blocks
        args = {
            "x": dyadic(rng, (batch, 20), dtype),
            "dy": dyadic(rng, (batch, EPILOGUE_N), dtype),
            "lr": np.array(1e-2, dtype.numpy),
            "p": rng.standard_normal((20, EPILOGUE_N)).astype(dtype.numpy),
            "m": rng.standard_normal((20, EPILOGUE_N)).astype(dtype.numpy),
            "v": rng.uniform(0.5, 2.0, (20, EPILOGUE_N)).astype(dtype.numpy),
            "acc": dyadic(rng, (20, EPILOGUE_N), dtype),
            "step": np.array(4.0, dtype.numpy),
        }
        actual = fn(args).updates
        expected = interpret(graph, args).updates
        np.testing.assert_array_equal(actual["acc"], expected["acc"], err_msg=f"acc B={batch}")
        np.testing.assert_array_equal(actual["step"], expected["step"])
        for name in ("p", "m", "v"):
            np.testing.assert_allclose(actual[name], expected[name], *tol, err_msg=f"{name} B={batch}")
            assert actual[name].dtype == dtype.numpy


# -- 4. threads -------------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    previous = ember.get_num_threads()
    yield
    ember.set_num_threads(previous)


def _with_threads(count: int, run: Callable[[], T]) -> tuple[T, int]:
    """`run()` with `count` threads, and the pool rounds it started."""
    ember.set_num_threads(count)
    state = pool_threads.pool().state
    before = int(state[SEQ])
    result = run()
    return result, (int(state[SEQ]) - before) // 2


@pytest.mark.parametrize(("ta", "tb", "dtype"), [(False, False, F32), (False, True, F32), (True, True, F64)])
def test_thread_count_does_not_change_a_bit(restore_threads, ta: bool, tb: bool, dtype: DType) -> None:
    """1009 x 1000 x 64: many tasks (16 in float32 on a 1 MiB L2), the last
    row after whole tiles of 8 (or 6) rows taking the one-row routine; each
    task computes its block the same way whichever thread takes it, so
    results are bitwise identical."""
    rng = np.random.default_rng(7)
    a, b = random_operands(rng, 1009, 1000, 64, dtype)
    one, _ = _with_threads(1, lambda: run_symbolic(ta, tb, dtype, a, b))
    two, rounds = _with_threads(2, lambda: run_symbolic(ta, tb, dtype, a, b))
    assert one.tobytes() == two.tobytes()
    if pool_threads.available_cores() >= 2:
        assert rounds == 1, "the 2-thread run did not use the pool"
    check_product(two, a, b, dtype, "1009x1000x64")


def test_thread_count_does_not_change_partial_sums(restore_threads) -> None:
    """K over KC with partial sums in C and in the shared scratch, many tasks."""
    (_, one), _ = _with_threads(1, lambda: run_deep(np.random.default_rng(8), 600))
    (args, two), _ = _with_threads(2, lambda: run_deep(np.random.default_rng(8), 600))
    for name in DEEP:
        assert one[name].tobytes() == two[name].tobytes(), name
    check_deep(args, two, "M=600, 2 threads")


# -- 5. the library's building blocks ------------------------------------------------------


def _jit(module: ir.Module) -> JitModule:
    module.triple = HOST.triple
    return JitModule(compile_module(str(module), HOST).object_code, HOST)


@functools.cache
def transpose_function(width: int, dtype: DType) -> tuple[Callable, str, JitModule]:
    """void transpose(ptr src, ptr dst): dst = src.T for a width x width block;
    with its IR text and the machine code (kept alive with the function)."""
    element = ir.FloatType() if dtype is F32 else ir.DoubleType()
    vtype = ir.VectorType(element, width)
    module = ir.Module(name=f"transpose{width}")
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR]), name="transpose_block")
    src, dst = fn.args
    b = ir.IRBuilder(fn.append_basic_block())
    rows = [
        b.load(b.gep(src, [ir.Constant(I64, r * width)], source_etype=element), typ=vtype, align=1)
        for r in range(width)
    ]
    for r, row in enumerate(transpose(b, rows)):
        b.store(row, b.gep(dst, [ir.Constant(I64, r * width)], source_etype=element), align=1)
    b.ret_void()
    code = _jit(module)
    call = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(code.address("transpose_block"))
    return (lambda s, d: call(s.ctypes.data, d.ctypes.data)), str(fn), code


@pytest.mark.parametrize("width", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_transpose_of_a_register_block(width: int, dtype: DType) -> None:
    run, text, _ = transpose_function(width, dtype)
    src = np.arange(width * width, dtype=dtype.numpy).reshape(width, width) * 1.5 - 7
    dst = np.full_like(src, np.nan)
    run(src, dst)
    np.testing.assert_array_equal(dst, src.T)
    # log2(W) stages of W shuffles each, nothing else
    assert text.count("shufflevector") == width * int(math.log2(width))


def packing_function(plan: Blocking, name: str):
    """The library's packing routine `name` (pack_b_columns or pack_a_rows:
    both take a pointer, three sizes and a pointer), callable."""
    module = ir.Module(name=f"{name}_{plan.key}")
    routine = getattr(GemmLibrary(module), name)(plan)
    wrapper = ir.Function(module, routine.function_type, name="pack")
    b = ir.IRBuilder(wrapper.append_basic_block())
    b.call(routine, wrapper.args)
    b.ret_void()
    code = _jit(module)
    args = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
    return ctypes.CFUNCTYPE(None, *args)(code.address("pack")), code


@pytest.mark.parametrize("routine", ["pack_a_rows", "pack_b_columns"])
@pytest.mark.parametrize(
    ("dtype", "columns"), [(F32, None), (F32, 1), (F64, None), (F64, 1)], ids=["f32", "f32-narrow", "f64", "f64-narrow"]
)
def test_transposing_packs_fill_whole_panels(routine: str, dtype: DType, columns: int | None) -> None:
    """Each row of a row-major source (rows `stride` apart) becomes a column
    of dst[k][...]: pack_a_rows puts A's MR rows side by side, pack_b_columns
    a transposed weight's NR rows (B's columns). Zeros past the source's rows
    and up to the next whole vector of k, nothing written beyond. The narrow
    tile's 12 rows are more than float64's 8 lanes: transposed in two groups."""
    plan = blocking(HOST, dtype, columns)
    pack, _code = packing_function(plan, routine)
    lanes, width = plan.lanes, (plan.mr if routine == "pack_a_rows" else plan.nr)
    rng = np.random.default_rng(9)
    depths = (1, lanes - 1, lanes, lanes + 1, 2 * lanes + 3, plan.kc)
    for depth, count in itertools.product(depths, (1, width // 2 + 1, width)):
        stride = depth + 3
        source = rng.standard_normal((count, stride)).astype(dtype.numpy)
        dst = np.full((plan.kc_padded + 2, width), np.nan, dtype.numpy)
        sizes = (count, depth) if routine == "pack_a_rows" else (depth, count)
        pack(source.ctypes.data, stride, *sizes, dst.ctypes.data)
        written = -(-depth // lanes) * lanes
        expected = np.zeros((written, width), dtype.numpy)
        expected[:depth, :count] = source[:, :depth].T
        label = f"depth={depth} rows={count}"
        np.testing.assert_array_equal(dst[:written], expected, err_msg=label)
        assert np.isnan(dst[written:]).all(), f"{label}: wrote past the panel"


# -- blocking on fake targets -------------------------------------------------------------

KIB, MIB = 1024, 1024 * 1024


def fake_target(vector_bits: int, l2_bytes: int, cores: int = 4, l3_bytes: int = 32 * MIB) -> Target:
    return Target("x86_64-unknown-linux-gnu", "generic", "", vector_bits, 32 * KIB, l2_bytes, l3_bytes, cores)


L2_SIZES = (64 * KIB, 256 * KIB, 512 * KIB, MIB, 2 * MIB, 32 * MIB, 128 * MIB)


@pytest.mark.parametrize("vector_bits", [256, 512], ids=["avx2", "avx512"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_blocking_is_whole_tiles_and_fits_the_cache(vector_bits: int, dtype: DType) -> None:
    lanes = vector_bits // (8 * dtype.itemsize)
    previous: Blocking | None = None
    for l2, l3 in itertools.product(L2_SIZES, (4 * MIB, 32 * MIB)):
        for cores in (1, 4):
            for columns in (None, 1, lanes - 1, lanes, lanes + 1, 100, 5000):
                plan = blocking(fake_target(vector_bits, l2, cores, l3), dtype, columns)
                label = f"L2={l2} L3={l3} cores={cores} columns={columns}: {plan}"
                assert plan.lanes == lanes, label
                assert plan.dtype is dtype, label
                narrow = columns is not None and columns <= lanes
                wide = TILE if vector_bits == 512 else TILE_16_REGISTERS
                assert (plan.mr, plan.vectors) == (NARROW_TILE if narrow else wide), label
                assert plan.kc % lanes == 0, label
                assert plan.kc_padded == plan.kc, label
                assert plan.mc % plan.mr == 0, label
                assert plan.nc % plan.nr == 0, label
                # the packed B micro-panel takes at most 1/16 of L2, the A block half, the B block 1/8 of L3
                assert plan.kc * plan.nr * plan.itemsize <= l2 // 16 or plan.kc == 128, label
                assert plan.mc * plan.kc * plan.itemsize <= l2 // 2 or plan.mc == plan.mr, label
                assert plan.kc * plan.nc * plan.itemsize <= l3 // 8 or plan.nc == plan.nr, label
                if columns is not None:  # every core gets a share of the columns
                    share = -(-columns // cores)
                    assert plan.nc <= max(plan.nr, -(-share // plan.nr) * plan.nr), label
                blocks = (plan.mc + plan.nc) * plan.kc_padded + plan.mr * plan.nr
                assert plan.thread_bytes >= blocks * plan.itemsize, label
                assert plan.thread_bytes % 64 == 0, label
        wide = blocking(fake_target(vector_bits, l2), dtype, None)
        if previous is not None and l3 == 4 * MIB:  # a larger L2 never gives smaller KC or MC
            assert wide.kc >= previous.kc, f"L2={l2}: {wide} after {previous}"
            assert wide.mc >= previous.mc, f"L2={l2}: {wide} after {previous}"
        previous = wide
        small_l3 = blocking(fake_target(vector_bits, l2, l3_bytes=4 * MIB), dtype, None)
        assert small_l3.nc <= wide.nc, f"L2={l2}: a smaller L3 gave a wider B block"


def test_blocking_of_the_documented_zen4_core() -> None:
    """gemm_library.blocking's docstring: KC = 512, MC = 256 (AVX-512's 8-row
    tiles), NC = 2048 on a 1 MiB L2 and 32 MiB L3 (float32); AVX2 has 6-row tiles."""
    plan = blocking(fake_target(512, MIB), F32, None)
    assert (plan.kc, plan.mc, plan.nc) == (512, 256, 2048)
    assert (plan.mr, plan.vectors, plan.lanes, plan.nr) == (8, 2, 16, 32)
    plan = blocking(fake_target(256, MIB), F32, None)
    assert (plan.mr, plan.vectors, plan.nr) == (6, 2, 16)


@pytest.mark.parametrize(
    ("depth", "kc", "mc"),
    [(None, 512, 256), (100, 512, 256), (512, 512, 256), (600, 608, 208), (784, 784, 160), (1024, 1024, 128),
     (1536, 768, 168), (2048, 1024, 128), (5000, 1008, 128)],
)  # fmt: skip
def test_a_known_deep_k_takes_fewer_deeper_blocks(depth: int | None, kc: int, mc: int) -> None:
    """On the documented Zen 4 core (1 MiB L2, float32, 8x32 tiles), a K known
    to be deeper than KC = 512 is cut into the fewest even blocks of at most
    1024 (a B micro-panel of an eighth of L2); MC shrinks so the A block still
    takes half of L2. Shallower or unknown K keeps the default blocking."""
    plan = blocking(fake_target(512, MIB), F32, None, None, depth)
    assert (plan.kc, plan.mc) == (kc, mc)
    assert plan.kc % plan.lanes == 0
    assert plan.mc % plan.mr == 0
    assert plan.mc * plan.kc * plan.itemsize <= MIB // 2
    if depth is not None and depth > 512:
        blocks = -(-depth // plan.kc)
        assert blocks == -(-depth // 1024), "not the fewest blocks"
        assert depth - (blocks - 1) * plan.kc > plan.kc - 16 * blocks, "the last block is shallow"


def test_deep_blocks_keep_the_register_tile_and_the_shared_functions() -> None:
    """KC is a property of the task loops alone: the shared functions
    (microkernels, packing, tile moves) are named by the register tile, so a
    module's deep and shallow matmuls of one tile call the same ones."""
    shallow = blocking(fake_target(512, MIB), F32, None, None, 256)
    deep = blocking(fake_target(512, MIB), F32, None, None, 2048)
    assert shallow.kc != deep.kc
    assert shallow.key == deep.key
    # no deeper block where it would leave the A block fewer than DEEP_MC rows
    # (AVX2 on a 512 KiB L2), nor where KC is KC_MAX already (AVX2 on 1 MiB)
    for l2 in (512 * KIB, MIB):
        default = blocking(fake_target(256, l2), F32, None)
        assert blocking(fake_target(256, l2), F32, None, None, 2048) == default


@functools.cache
def huge_l2_matmul() -> GraphFunction:
    """A matmul compiled for this CPU with AVX2's 6-row tile, as if its L2
    were 64 MiB: MC hits its cap."""
    graph = make_graph(
        "huge_l2",
        {"a": tensor(F32, ("M", 8)), "b": tensor(F32, (8, 32))},
        lambda bld, v: {"c": bld.matmul(v["a"], v["b"])},
    )
    return GraphFunction(graph, target=dataclasses.replace(HOST, l2_bytes=64 * MIB, vector_bits=256))


def test_blocks_of_a_large_cache_are_whole_tiles_when_run() -> None:
    """Regression: MC was capped at 4096 rows, not a multiple of MR = 6, so a
    block of 4093..4096 rows packed 4098 rows of A, over the start of the
    packed B panel (wrong results)."""
    fn = huge_l2_matmul()
    plan = kernel_plan(kernel_storing(fn, "c"), fn.build.target)
    rng = np.random.default_rng(10)
    for m in (plan.mc - 1, plan.mc, plan.mc + 1):
        a, b = random_operands(rng, m, 32, 8, F32)
        check_product(fn({"a": a, "b": b}).outputs["c"], a, b, F32, f"M={m} with {plan}")
    assert plan.mc % plan.mr == 0


def test_layers_alike_share_one_microkernel() -> None:
    """The hidden layers of an MLP (the same epilogue on tensors that live
    elsewhere, with other strides) hand the library's task routine one
    microkernel, named by its text, which LLVM then optimizes and compiles
    once; the step still trains as the reference."""
    from ember import nn, optim

    def program(backend: str) -> ember.Program:
        model = nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 3))
        return ember.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=0.01), backend=backend, seed=4)

    prog, reference = program("native"), program("reference")
    text = prog._native.compiled("train").llvm_ir
    tasks = re.findall(r'^define [^\n]*@"(train_step\.k\d+)\.task"\(.*?^}$', text, re.M | re.S)
    calls = {
        task: set(re.findall(r'store [^\n@]*@"(ember\.micro\.[^"]*)"', body))
        for task, body in zip(tasks, re.findall(r'^define [^\n]*\.task"\(.*?^}$', text, re.M | re.S), strict=True)
    }
    defined = set(re.findall(r'^(?:define|declare) [^\n]*@"(ember\.micro\.[^"]*)"', text, re.M))
    called = set().union(*calls.values())
    assert called == defined  # nothing defined that no task calls
    assert len(defined) < sum(1 for c in calls.values() if c), calls  # some tasks share one
    rng = np.random.default_rng(5)
    for _ in range(3):
        x, y = rng.standard_normal((16, 24)).astype(np.float32), rng.integers(0, 3, 16)
        assert prog.train_step(x, y) == pytest.approx(reference.train_step(x, y), rel=1e-5)
    for name, value in reference.parameters.items():
        np.testing.assert_allclose(prog.parameters[name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_the_module_prints_as_llvmlite_prints_it(monkeypatch) -> None:
    """Code generation keeps the text the library printed of each microkernel
    and prints the module from it: the same text as printing it all again."""
    from ember import nn, optim
    from ember.compiler.codegen import module as codegen_module

    model = nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 3))
    build = ember.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=0.01))._native
    texts = {}
    ours = codegen_module._Module._get_body_lines

    def both(module: ir.Module) -> list[str]:
        texts["llvmlite"] = ir.Module._get_body_lines(module)
        texts["ours"] = ours(module)
        return texts["ours"]

    monkeypatch.setattr(codegen_module._Module, "_get_body_lines", both)
    codegen_module.emit_module([build.programs["train"]], build.target)
    assert texts["ours"] == texts["llvmlite"]


def test_a_one_row_weight_gradient_runs_the_matrix_vector_routine_alone() -> None:
    """The weight gradient of a layer with one output is a row at compile time
    (C is 1 x in): its kernel is the matrix-vector routine and its epilogue,
    with no blocked path (nothing packed), over a batch deeper than a K block;
    the step trains as the reference interpreter."""
    from ember import nn, optim

    def program(backend: str) -> ember.Program:
        model = nn.Sequential(nn.Linear(37, 1))
        return ember.compile(model, nn.MSELoss(), optim.Adam(lr=0.01), backend=backend, seed=2)

    prog, reference = program("native"), program("reference")
    build = prog._native
    kernels = build.programs["train"].kernels
    gradient = next(k for k in kernels if k.matmul is not None and k.matmul.output.type.shape == (1, 37))
    schedule = schedule_matmul(build.programs["train"], gradient, build.target)
    assert schedule.row_vector
    assert schedule.one_row == "rows"
    assert schedule.partial_sums is None  # the routine takes the whole depth at once
    text = build.compiled("train").llvm_ir
    task = re.search(rf'^define [^\n]*@"train_step\.{gradient.name}\.task"\(.*?^}}$', text, re.M | re.S).group(0)
    name, routine = task_routine_text(task_shape(gradient, schedule), schedule.blocking, build.target)
    assert f'@"{name}"' in task
    assert "gemv_rows" in routine
    assert "pack_" not in routine
    assert "micro.masked" not in routine
    rng = np.random.default_rng(1)
    for rows in (1300, 7, 1):  # deeper than any K block; odd; one row
        x, y = rng.standard_normal((rows, 37)).astype(np.float32), rng.standard_normal((rows, 1)).astype(np.float32)
        assert prog.train_step(x, y) == pytest.approx(reference.train_step(x, y), rel=1e-5)
    for name, value in reference.parameters.items():
        np.testing.assert_allclose(prog.parameters[name], value, rtol=1e-4, atol=1e-6)
