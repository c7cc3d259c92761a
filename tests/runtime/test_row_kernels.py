"""Row kernels (fusion.RowSchedule, codegen/rows.py): LayerNorm, softmax,
log_softmax and cross entropy, forward and backward, compiled natively and
checked against the reference interpreter over odd row widths (full
vectors, masked remainders, rows shorter than a vector), float32 and
float64, one row and no rows; and the plan: each normalization is one
kernel that sweeps its rows a few times."""

from __future__ import annotations

import functools

import llvmlite.ir as ir
import numpy as np
import pytest
from native_helpers import Tol, assert_matches, make_graph, native, run_both, tensor

import ember
from ember.compiler.autodiff import autodiff
from ember.compiler.codegen.kernel import KernelEmitter
from ember.compiler.codegen.rows import RowKernel
from ember.compiler.plan import KernelProgram
from ember.compiler.simplify import simplify
from ember.ir import Builder, DType, Graph, Value

F32, F64 = DType.float32, DType.float64
WIDTHS = (1, 3, 7, 17, 100, 257)
BATCHES = (0, 1, 5)
RTOL = {F32: 2e-5, F64: 1e-12}
"""Relative to the largest magnitude of each result: sums over rows of up to
257 elements, in a different order than NumPy's."""


def layer_norm(b: Builder, x: Value, axes: list[int], eps: float = 1e-5) -> Value:
    centered = b.sub(x, b.mean(x, axes=axes, keepdims=True))
    variance = b.mean(b.mul(centered, centered), axes=axes, keepdims=True)
    return b.mul(centered, b.rsqrt(b.add(variance, eps)))


def _forward(kind: str, b: Builder, v: dict[str, Value]) -> Value:
    """The tested function of the input `x` scaled by the param `u` (so the
    gradient flows back through it to `u`)."""
    x = b.mul(v["x"], v["u"])
    rank = x.type.rank
    if kind == "layer_norm":
        return b.add(b.mul(layer_norm(b, x, [rank - 1]), v["w"]), v["c"])
    if kind == "layer_norm_2d":
        return b.add(b.mul(layer_norm(b, x, [rank - 2, rank - 1]), v["w"]), v["c"])
    if kind == "softmax":
        return b.softmax(x, axis=rank - 1)
    if kind == "log_softmax":
        return b.log_softmax(x, axis=rank - 1)
    raise AssertionError(kind)


def _shapes(kind: str, width: int) -> tuple[tuple, tuple]:
    """The input's shape and the params' (u, w, c) shape."""
    if kind == "layer_norm_2d":
        return ("B", 3, width), (3, width)
    return ("B", width), (width,)


@functools.cache
def training_graph(kind: str, width: int, dtype: DType) -> Graph:
    """Forward output `y`, the loss sum(y * r) and its gradients, simplified as a Program's graphs are."""
    x_shape, p_shape = _shapes(kind, width)
    params = {name: tensor(dtype, p_shape) for name in ("u", "w", "c")}
    inputs = {"x": tensor(dtype, x_shape), "r": tensor(dtype, x_shape)}

    def build(b, v):
        y = _forward(kind, b, v)
        return {"loss": b.sum(b.mul(y, v["r"]), axes=list(range(y.type.rank))), "y": y}

    graph = make_graph(f"{kind}_{width}_{dtype}", inputs, build, params=params)
    position = graph.nodes.index(graph.outputs["y"].node)
    trained = autodiff(graph)  # a copy with the same nodes first, and only the loss and gradients as outputs
    trained.outputs["y"] = trained.nodes[position].output
    return simplify(trained)


@functools.cache
def cross_entropy_graph(width: int, dtype: DType) -> Graph:
    """Mean cross entropy of logits x * u against labels, and its gradient."""

    def build(b, v):
        logits = b.mul(v["x"], v["u"])
        onehot = b.one_hot(v["labels"], num_classes=width, dtype=dtype)
        per_row = b.sum(b.mul(onehot, b.log_softmax(logits, axis=1)), axes=[1])
        return {"loss": b.neg(b.mean(per_row, axes=[0]))}

    inputs = {"x": tensor(dtype, ("B", width)), "labels": tensor(DType.int64, ("B",))}
    graph = make_graph(f"cross_entropy_{width}_{dtype}", inputs, build, params={"u": tensor(dtype, (width,))})
    return simplify(autodiff(graph))


def program(graph: Graph) -> KernelProgram:
    return native(graph).build.programs[graph.name]


def check(graph: Graph, args: dict[str, np.ndarray], dtype: DType, label: str) -> None:
    actual, expected = run_both(graph, args)
    for name, value in expected.outputs.items():
        scale = float(np.abs(value).max(initial=1.0))
        tol = Tol(RTOL[dtype], RTOL[dtype] * scale)
        assert_matches(actual.outputs[name], value, tol, f"{name} {label}")


def arguments(graph: Graph, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    """Values near 1 (so no row is constant) for every float argument."""
    args = {}
    for a in graph.arguments:
        if a.type.dtype.is_float:
            shape = tuple(batch if d == "B" else d for d in a.type.shape)
            args[a.name] = (1 + rng.standard_normal(shape)).astype(a.type.dtype.numpy)
    return args


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", ["layer_norm", "softmax", "log_softmax", "layer_norm_2d"])
def test_native_matches_the_reference(kind: str, width: int, dtype: DType) -> None:
    graph = training_graph(kind, width, dtype)
    rng = np.random.default_rng(width)
    for batch in BATCHES:
        check(graph, arguments(graph, rng, batch), dtype, f"{kind} width {width} B={batch}")


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("width", WIDTHS)
def test_cross_entropy_matches_the_reference(width: int, dtype: DType) -> None:
    graph = cross_entropy_graph(width, dtype)
    rng = np.random.default_rng(width)
    for batch in BATCHES:
        args = arguments(graph, rng, batch)
        args["labels"] = rng.integers(0, width, batch)
        check(graph, args, dtype, f"width {width} B={batch}")


def _kernels_with(plan: KernelProgram, op: str) -> list:
    return [k for k in plan.kernels if any(n.op.name == op for n in k.nodes)]


@functools.cache
def layer_norm_forward_graph(width: int) -> Graph:
    def build(b, v):
        return {"y": b.add(b.mul(layer_norm(b, v["x"], [1]), v["w"]), v["c"])}

    params = {"w": tensor(F32, (width,)), "c": tensor(F32, (width,))}
    return make_graph(f"layer_norm_forward_{width}", {"x": tensor(F32, ("B", width))}, build, params=params)


def test_layer_norm_forward_is_one_kernel_of_three_sweeps() -> None:
    """The mean, the variance and the normalized, scaled and shifted output:
    one kernel that sweeps each row three times, with the mean and the
    reciprocal standard deviation computed once per row in between."""

    graph = layer_norm_forward_graph(37)
    plan = program(graph)
    assert len(plan.kernels) == 1
    (kernel,) = plan.kernels
    assert kernel.kind == "rows"
    assert kernel.rows.sweeps == 3
    assert {n.op.name for n in kernel.rows.scalars} == {"mul", "add", "rsqrt"}
    assert kernel.stores == [plan.graph.outputs["y"]]
    rng = np.random.default_rng(3)
    for batch in (0, 1, 6):
        args = {"x": rng.standard_normal((batch, 37)).astype(np.float32)}
        args |= {"w": rng.standard_normal(37).astype(np.float32), "c": rng.standard_normal(37).astype(np.float32)}
        check(graph, args, F32, f"B={batch}")


def test_softmax_forward_and_backward_are_one_kernel() -> None:
    """softmax, the loss, the gradient through softmax and its sum over the
    batch for u: one row kernel (the loss and u's gradient add up in memory);
    the other kernels only write the reshaped gradient and the zero ones."""
    plan = program(training_graph("softmax", 17, F32))
    rows = [k for k in plan.kernels if k.kind == "rows"]
    assert len(rows) == 1
    assert rows[0].rows.sweeps == 4  # max; exp and its sum; softmax, loss and the gradient's dot; the gradient
    assert all(n.op.name in ("reshape", "broadcast_to") for k in plan.kernels if k not in rows for n in k.nodes)


def test_a_later_sweep_reads_back_an_exp_from_its_row_buffer() -> None:
    """softmax's exp(x - max) is computed once per element: the sweep that sums
    it keeps it in a row buffer for the sweep that divides it."""
    plan = program(training_graph("softmax", 257, F32))
    (kernel,) = [k for k in plan.kernels if k.kind == "rows"]
    assert "exp" in {n.op.name for n in kernel.rows.keep}
    assert sum(n.op.name == "exp" for nodes in kernel.rows.evaluate for n in nodes if n not in kernel.rows.keep) == 0


@functools.cache
def symbolic_rows_graph() -> Graph:
    """softmax over rows of symbolic length: no row buffer, so later sweeps compute exp again."""
    return make_graph("symbolic_rows", {"x": tensor(F32, (3, "B"))}, lambda b, v: {"y": b.softmax(v["x"], axis=1)})


def test_rows_of_symbolic_length() -> None:
    graph = symbolic_rows_graph()
    (kernel,) = program(graph).kernels
    assert kernel.rows.sweeps == 3
    assert not kernel.rows.keep
    rng = np.random.default_rng(7)
    for length in (0, 1, 7, 40):
        check(graph, {"x": rng.standard_normal((3, length)).astype(np.float32)}, F32, f"length {length}")


@pytest.fixture
def restore_threads():
    previous = ember.get_num_threads()
    yield
    ember.set_num_threads(previous)


@pytest.mark.parametrize("threads", [1, 2])
def test_rows_split_across_threads(restore_threads, threads: int) -> None:
    """Enough rows (here 77K elements) run as one task per core on the
    thread pool; a partial last task and fewer rows than cores as well."""
    ember.set_num_threads(threads)
    graph = layer_norm_forward_graph(129)
    rng = np.random.default_rng(11)
    for batch in (601, 1, 2, 3):
        check(graph, arguments(graph, rng, batch), F32, f"B={batch} threads={threads}")
    assert "ember_parallel_for" in native(graph).build.dump("llvm")


@pytest.mark.parametrize("width", [1, 4, 9])
def test_a_sum_of_everything_beside_a_sum_of_each_row(width: int) -> None:
    """A total (a row kernel whose one row is the whole tensor) and a sum
    over the last axis that keeps the first: the second must not be added
    up into one register over the whole tensor."""

    def build(b: Builder, v: dict[str, Value]) -> dict[str, Value]:
        z = b.mul(v["x"], v["x"])
        total = b.mul(b.sum(z, axes=[0, 1]), 0.5)  # its scalar consumer makes the kernel a row kernel
        return {"total": total, "rows": b.sum(b.mul(z, 3.0), axes=[1], keepdims=True)}

    graph = make_graph(f"total_and_rows_{width}", {"x": tensor(F64, ("B", width))}, build)
    x = np.random.default_rng(width).normal(size=(6, width))
    actual, expected = run_both(graph, {"x": x})
    for name, value in expected.outputs.items():
        assert_matches(actual.outputs[name], value, Tol(rtol=1e-12), name)


def test_row_kernels_emit_in_graph_order_not_hash_order():
    """The schedule keeps its members in sets (hashed by identity, which
    differs from process to process); the emitter walks them in the kernel's
    order, so the same model gives the same LLVM IR in every process (a
    compile cache keyed by the IR depends on it)."""
    model = ember.nn.Sequential(
        ember.nn.Linear(12, 32), ember.nn.LayerNorm(32), ember.nn.GELU(), ember.nn.Linear(32, 3)
    )
    prog = ember.compile(model, loss=ember.nn.CrossEntropyLoss(), optimizer=ember.optim.Adam(lr=0.01))
    program = prog._native.programs["train"]
    kernels = [k for k in program.kernels if k.rows is not None]
    assert kernels
    for kernel in kernels:
        emitter = KernelEmitter(program, kernel, ir.Module(), prog._native.target)
        rows = RowKernel(emitter)
        assert list(rows.scalar_stores) == [v for v in kernel.stores if v in rows.scalar_stores]
        kept = [n.output for n in kernel.nodes if n in kernel.rows.keep]
        assert list(rows.row_buffers) == kept
