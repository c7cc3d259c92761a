"""Fused kernel patterns compiled natively against the reference interpreter,
and the plan the compiler chose for them: how many kernels, what each one
stores, and where every result lives (in place, in the workspace, or
written back by a copy kernel).

The plan is read from `GraphFunction.build.programs[name]`: its graph is the
lowered graph (softmax expanded, a node of its own for every result), its
kernels run in order, and `buffers` maps each stored value to its region."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from inputs import draw
from native_helpers import (
    EPS,
    Tol,
    assert_matches,
    make_graph,
    native,
    run_both,
    tensor,
    transcendental_rtol,
)

from ember.compiler.optimizers import Adam, Scalars
from ember.compiler.plan import KernelProgram
from ember.ir import DType, Graph

F32, F64 = DType.float32, DType.float64
TOL = {F32: Tol(1e-5, 1e-6), F64: Tol(1e-12, 1e-14)}
"""Arithmetic chains of a few roundings each (FMA contraction may differ)."""


def program(graph: Graph) -> KernelProgram:
    return native(graph).build.programs[graph.name]


def kernel_ops(program: KernelProgram) -> list[list[str]]:
    """The op names of each kernel's members, in execution order (copy kernels: ["copy"])."""
    return [["copy"] if k.copy else [n.op.name for n in k.nodes] for k in program.kernels]


def check_all(graph: Graph, args: dict[str, np.ndarray], tol: Tol, label: str = "") -> None:
    """Every output and update of one run matches the reference within `tol`."""
    actual, expected = run_both(graph, args)
    assert set(actual.outputs) == set(expected.outputs)
    assert set(actual.updates) == set(expected.updates)
    for name in expected.outputs:
        assert_matches(actual.outputs[name], expected.outputs[name], tol, f"output {name} {label}")
    for name in expected.updates:
        assert_matches(actual.updates[name], expected.updates[name], tol, f"update {name} {label}")


# -- matmul epilogues -------------------------------------------------------------

ACTIVATIONS = ["relu", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_tanh", "silu", "mish", "hardswish"]
IN_FEATURES, OUT_FEATURES = 19, 37
"""K and N: neither a multiple of the 6-row tile nor of the 2-vector panel."""


@functools.cache
def linear_graph(transpose_a: bool, transpose_b: bool, dtype: DType) -> Graph:
    """One linear layer per activation: act(op(x) @ op(w) + bias), each with its own weights."""

    def build(b, v):
        outputs = {}
        for act in ACTIVATIONS:
            h = b.matmul(v["x"], v[f"w_{act}"], transpose_a=transpose_a, transpose_b=transpose_b)
            outputs[act] = b.emit(act, b.add(h, v[f"b_{act}"]))
        return outputs

    x_shape = (IN_FEATURES, "B") if transpose_a else ("B", IN_FEATURES)
    w_shape = (OUT_FEATURES, IN_FEATURES) if transpose_b else (IN_FEATURES, OUT_FEATURES)
    params = {f"w_{a}": tensor(dtype, w_shape) for a in ACTIVATIONS}
    params |= {f"b_{a}": tensor(dtype, (OUT_FEATURES,)) for a in ACTIVATIONS}
    name = f"linear_{int(transpose_a)}{int(transpose_b)}_{dtype}"
    return make_graph(name, {"x": tensor(dtype, x_shape)}, build, params=params)


LINEAR_CASES = [(ta, tb, F32) for ta, tb in itertools.product([False, True], repeat=2)]
LINEAR_CASES += [(False, False, F64), (False, True, F64)]


@pytest.mark.parametrize(
    ("ta", "tb", "dtype"), LINEAR_CASES, ids=[f"ta{int(a)}-tb{int(b)}-{d}" for a, b, d in LINEAR_CASES]
)
def test_linear_bias_activation_is_one_kernel(ta: bool, tb: bool, dtype: DType) -> None:
    graph = linear_graph(ta, tb, dtype)
    plan = program(graph)
    assert kernel_ops(plan) == [["matmul", "add", act] for act in ACTIVATIONS]
    assert all(k.stores == [plan.graph.outputs[act]] for k, act in zip(plan.kernels, ACTIVATIONS, strict=True))

    rng = np.random.default_rng(20)
    eps, rt = EPS[dtype], transcendental_rtol(dtype)
    for batch in (1, 6, 7, 33):
        args = {
            a.name: rng.standard_normal(a.type.concrete_shape({"B": batch})).astype(dtype.numpy)
            for a in graph.arguments
        }
        actual, expected = run_both(graph, args)
        x = args["x"].T if ta else args["x"]
        for act in ACTIVATIONS:
            w = args[f"w_{act}"].T if tb else args[f"w_{act}"]
            bias = args[f"b_{act}"].astype(np.float64)
            h = x.astype(np.float64) @ w + bias
            # The matmul's rounding (K u |x||w| per backend) passes through the
            # activation (slope <= 1.13 for gelu); then the activation's own error,
            # absolute in 1 + tanh for gelu (0.5|h| rt).
            rounding = (IN_FEATURES + 2) * eps * (np.abs(x) @ np.abs(w) + np.abs(bias))
            allowed = 1.2 * rounding + (rt + 4 * eps) * (np.abs(expected.outputs[act]) + 0.5 * np.abs(h))
            assert_matches(actual.outputs[act], expected.outputs[act], Tol(1.0), f"{act} B={batch}", scale=allowed)


@functools.cache
def epilogue_stores_graph() -> Graph:
    """h = x @ w + bias stored, with relu(h) and the mask h > 0: three stores of one tile."""

    def build(b, v):
        h = b.add(b.matmul(v["x"], v["w"]), v["bias"])
        return {"h": h, "relu": b.relu(h), "mask": b.gt(h, 0.0), "scaled": b.mul(h, v["scale"])}

    inputs = {"x": tensor(F32, ("B", 24)), "w": tensor(F32, (24, 70)), "bias": tensor(F32, (70,))}
    inputs["scale"] = tensor(F32, ())
    return make_graph("epilogue_stores", inputs, build)


def test_matmul_epilogue_with_several_stores() -> None:
    graph = epilogue_stores_graph()
    plan = program(graph)
    assert len(plan.kernels) == 1
    (kernel,) = plan.kernels
    assert kernel.kind == "matmul"
    outputs = plan.graph.outputs
    assert set(kernel.stores) == {outputs[k] for k in ("h", "relu", "mask", "scaled")}
    assert all(plan.buffers[outputs[k]].region == f"out:{k}" for k in outputs)
    rng = np.random.default_rng(21)
    for batch in (1, 5, 6, 13, 40):
        args = {
            "x": rng.standard_normal((batch, 24)).astype(np.float32),
            "w": rng.standard_normal((24, 70)).astype(np.float32),
            "bias": rng.standard_normal(70).astype(np.float32),
            "scale": np.array(-0.5, np.float32),
        }
        actual, expected = run_both(graph, args)
        bound = 24 * EPS[F32] * (np.abs(args["x"]) @ np.abs(args["w"]) + np.abs(args["bias"]))
        for name in ("h", "relu", "scaled"):
            scale = bound * (0.5 if name == "scaled" else 1.0)
            assert_matches(actual.outputs[name], expected.outputs[name], Tol(1.0), f"{name} B={batch}", scale=scale)
        sure = np.abs(expected.outputs["h"]) > bound  # the sign of h is certain there
        assert_matches(actual.outputs["mask"][sure], expected.outputs["mask"][sure], name=f"mask B={batch}")


# -- reductions and multi-output kernels ------------------------------------------


@functools.cache
def logsumexp_graph() -> Graph:
    def build(b, v):
        x = v["x"]
        peak = b.max(x, axes=[1], keepdims=True)
        total = b.sum(b.exp(b.sub(x, peak)), axes=[1], keepdims=True)
        return {"total": total, "lse": b.add(b.log(total), peak)}

    return make_graph("logsumexp", {"x": tensor(F32, ("B", 37))}, build)


def test_reduction_fused_with_its_producer() -> None:
    """sum(exp(x - max(x))) and log(total) + max: one row kernel, the max in
    a first sweep over each row, x - max, exp and the sum in a second, the
    log and add once per row after it; only the results are stored."""
    graph = logsumexp_graph()
    plan = program(graph)
    assert kernel_ops(plan) == [["max", "sub", "exp", "sum", "log", "add"]]
    assert plan.kernels[0].rows.sweeps == 2
    assert set(plan.kernels[0].stores) == {plan.graph.outputs["total"], plan.graph.outputs["lse"]}
    rng = np.random.default_rng(22)
    for batch in (1, 5, 33):
        x = (10 * rng.standard_normal((batch, 37))).astype(np.float32)
        check_all(graph, {"x": x}, TOL[F32], f"B={batch}")


@functools.cache
def stored_and_summed_graph() -> Graph:
    def build(b, v):
        y = b.add(b.mul(v["x"], v["w"]), 1.0)
        return {"y": y, "columns": b.sum(y, axes=[0]), "rows": b.sum(y, axes=[1], keepdims=True)}

    return make_graph("stored_and_summed", {"x": tensor(F32, ("B", 37)), "w": tensor(F32, (37,))}, build)


def test_value_stored_and_column_summed_in_one_kernel() -> None:
    """One pass over x stores y, adds each row into the column sums and
    accumulates each row's sum in a register."""
    graph = stored_and_summed_graph()
    plan = program(graph)
    assert len(plan.kernels) == 1
    outputs = plan.graph.outputs
    assert set(plan.kernels[0].stores) == {outputs["y"], outputs["columns"], outputs["rows"]}
    rng = np.random.default_rng(23)
    for batch in (1, 5, 33, 100):
        args = {"x": draw("real", (batch, 37), rng, F32), "w": draw("real", (37,), rng, F32)}
        actual, expected = run_both(graph, args)
        # x*w + 1 may be one FMA natively: the backends differ by up to eps (|x w| + |y|).
        terms = np.abs(args["x"] * args["w"]) + np.abs(expected.outputs["y"])
        assert_matches(actual.outputs["y"], expected.outputs["y"], Tol(EPS[F32]), f"y B={batch}", scale=terms)
        columns, rows = terms.sum(axis=0), terms.sum(axis=1, keepdims=True)
        for name, scale in (("columns", columns), ("rows", rows)):
            assert_matches(actual.outputs[name], expected.outputs[name], TOL[F32], f"{name} B={batch}", scale=scale)


@functools.cache
def cross_entropy_graph() -> Graph:
    """The pieces of cross entropy: log_softmax, one_hot, the mean loss, and its
    gradient (softmax - one_hot) / B."""

    def build(b, v):
        logits = v["logits"]
        onehot = b.one_hot(v["labels"], num_classes=10, dtype=F32)
        log_probs = b.log_softmax(logits, axis=1)
        loss = b.neg(b.mean(b.sum(b.mul(onehot, log_probs), axes=[1]), axes=[0]))
        grad = b.div(b.sub(b.softmax(logits, axis=1), onehot), b.size(logits, axes=[0], dtype=F32))
        return {"loss": loss, "grad": grad, "log_probs": log_probs}

    return make_graph("cross_entropy", {"logits": tensor(F32, ("B", 10)), "labels": tensor(DType.int64, ("B",))}, build)


def test_softmax_cross_entropy_pieces() -> None:
    graph = cross_entropy_graph()
    plan = program(graph)
    ops = kernel_ops(plan)
    # One row kernel: the row max; exp(x - max) and its sum; the log-probabilities, the
    # per-row loss and the gradient. Then the mean over the batch.
    assert [k.rows.sweeps for k in plan.kernels] == [3, 1]
    assert not any(op in ("softmax", "log_softmax", "mean") for k in ops for op in k)
    rng = np.random.default_rng(24)
    for batch in (1, 5, 33):
        logits = (3 * rng.standard_normal((batch, 10))).astype(np.float32)
        labels = rng.integers(0, 10, batch)
        check_all(graph, {"logits": logits, "labels": labels}, TOL[F32], f"B={batch}")


# -- results that need a node of their own ------------------------------------------


@functools.cache
def aliased_outputs_graph() -> Graph:
    def build(b, v):
        y = b.exp(v["x"])
        return {"x": v["x"], "first": y, "second": y, "param": v["p"]}

    return make_graph("aliased_outputs", {"x": tensor(F32, ("B", 5))}, build, params={"p": tensor(F32, (3,))})


def test_outputs_that_are_arguments_or_shared() -> None:
    """An argument returned as an output and one value returned twice: each
    output gets its own buffer, written by its own kernel."""
    graph = aliased_outputs_graph()
    plan = program(graph)
    outputs = plan.graph.outputs
    assert len({id(v) for v in outputs.values()}) == 4
    assert {plan.buffers[v].region for v in outputs.values()} == {f"out:{k}" for k in outputs}
    writers = [k for k in plan.kernels for v in outputs.values() if v in k.stores]
    assert len(writers) == 4
    rng = np.random.default_rng(25)
    x, p = draw("real", (4, 5), rng, F32), draw("real", (3,), rng, F32)
    actual, expected = run_both(graph, {"x": x, "p": p})
    np.testing.assert_array_equal(actual.outputs["x"], x)
    np.testing.assert_array_equal(actual.outputs["param"], p)
    assert_matches(actual.outputs["first"], expected.outputs["first"], Tol(transcendental_rtol(F32)))
    np.testing.assert_array_equal(actual.outputs["first"], actual.outputs["second"])
    assert not np.shares_memory(actual.outputs["first"], actual.outputs["second"])


# -- updates of params and state ------------------------------------------------------


@functools.cache
def sgd_momentum_graph() -> Graph:
    """p' = p - lr * m', m' = 0.9 m + 0.1 g, and an output that reads the old p
    transposed (a matmul), so its kernel must run before p is overwritten."""

    def build(b, v):
        m = b.add(b.mul(v["m"], 0.9), b.mul(v["g"], 0.1))
        p = b.sub(v["p"], b.mul(m, v["lr"]))
        return {"y": b.matmul(v["x"], v["p"], transpose_b=True)}, {"p": p, "m": m}

    inputs = {"x": tensor(F32, ("B", 6)), "g": tensor(F32, (6, 6)), "lr": tensor(F32, ())}
    return make_graph(
        "sgd_momentum", inputs, build, params={"p": tensor(F32, (6, 6))}, state={"m": tensor(F32, (6, 6))}
    )


def test_updates_are_written_in_place() -> None:
    graph = sgd_momentum_graph()
    plan = program(graph)
    lowered = plan.graph
    for name, region in (("p", "params"), ("m", "state")):
        assert plan.buffers[lowered.updates[name]] == plan.buffers[lowered.argument(name)], name
        assert plan.buffers[lowered.updates[name]].region == region
    assert not any(k.copy for k in plan.kernels)
    reader = next(k for k in plan.kernels if k.kind == "matmul")
    writer = next(k for k in plan.kernels if lowered.updates["p"] in k.stores)
    assert plan.kernels.index(reader) < plan.kernels.index(writer)
    rng = np.random.default_rng(26)
    args = {a.name: draw("real", a.type.concrete_shape({"B": 3}), rng, F32) for a in graph.arguments}
    check_all(graph, args, TOL[F32])


@functools.cache
def running_mean_graph() -> Graph:
    """A buffer read by the output and updated in place, as BatchNorm's
    running mean is: r' = 0.9 r + 0.1 mean(x, 0); y = x - r (the old r)."""

    def build(b, v):
        r = v["r"]
        new = b.add(b.mul(r, 0.9), b.mul(b.mean(v["x"], axes=[0]), 0.1))
        return {"y": b.sub(v["x"], r)}, {"r": new}

    return make_graph("running_mean", {"x": tensor(F32, ("B", 6))}, build, buffers={"r": tensor(F32, (6,))})


def test_buffer_updates_are_written_in_the_model_arena() -> None:
    graph = running_mean_graph()
    plan = program(graph)
    lowered = plan.graph
    assert plan.buffers[lowered.argument("r")].region == "params"
    rng = np.random.default_rng(28)
    args = {"x": draw("real", (5, 6), rng, F32), "r": draw("real", (6,), rng, F32)}
    actual, expected = run_both(graph, args)
    assert_matches(actual.outputs["y"], expected.outputs["y"], TOL[F32])
    assert_matches(actual.updates["r"], expected.updates["r"], TOL[F32])
    np.testing.assert_allclose(expected.outputs["y"], args["x"] - args["r"], rtol=1e-6)


@functools.cache
def adam_graph() -> Graph:
    """The Adam update of one param, as compiler/optimizers.py emits it."""

    def build(b, v):
        step = b.add(v["step"], 1.0)
        state = {"exp_avg": v["m"], "exp_avg_sq": v["v"]}
        p, new_state = Adam().update(b, Scalars(v["lr"], step), v["p"], v["g"], state)
        return {}, {"p": p, "m": new_state["exp_avg"], "v": new_state["exp_avg_sq"], "step": step}

    shape = (20, 30)
    state = {"m": tensor(F32, shape), "v": tensor(F32, shape), "step": tensor(F32, ())}
    inputs = {"g": tensor(F32, shape), "lr": tensor(F32, ())}
    return make_graph("adam", inputs, build, params={"p": tensor(F32, shape)}, state=state)


def test_adam_update_of_one_param_is_one_kernel() -> None:
    graph = adam_graph()
    plan = program(graph)
    lowered = plan.graph
    big = [k for k in plan.kernels if k.domain == (20, 30)]
    assert len(big) == 1
    assert set(big[0].stores) == {lowered.updates[n] for n in ("p", "m", "v")}
    assert [k.domain for k in plan.kernels if k not in big] == [()]  # the step counter
    for name in ("p", "m", "v", "step"):
        assert plan.buffers[lowered.updates[name]] == plan.buffers[lowered.argument(name)], name
    assert plan.workspace == ()

    rng = np.random.default_rng(27)
    native_args = {
        "p": rng.standard_normal((20, 30)).astype(np.float32),
        "m": np.zeros((20, 30), np.float32),
        "v": np.zeros((20, 30), np.float32),
        "step": np.array(0.0, np.float32),
        "lr": np.array(1e-2, np.float32),
    }
    reference_args = dict(native_args)
    for step in range(1, 4):
        g = rng.standard_normal((20, 30)).astype(np.float32)
        actual, _ = run_both(graph, {**native_args, "g": g})
        _, expected = run_both(graph, {**reference_args, "g": g})
        for name in ("p", "m", "v", "step"):
            assert_matches(actual.updates[name], expected.updates[name], TOL[F32], f"{name} step {step}")
        native_args.update(actual.updates)
        reference_args.update(expected.updates)


@functools.cache
def scalar_momentum_graph() -> Graph:
    """SGD with momentum and weight decay of a scalar param: m' = 0.9 m + 0.01 p,
    p' = p - lr * m'. Both new values are scalars computed from scalar
    arguments (inline: recomputed in every kernel that uses them)."""

    def build(b, v):
        m = b.add(b.mul(v["m"], 0.9), b.mul(v["p"], 0.01))
        return {}, {"p": b.sub(v["p"], b.mul(m, v["lr"])), "m": m}

    return make_graph(
        "scalar_momentum", {"lr": tensor(F32, ())}, build, params={"p": tensor(F32, ())}, state={"m": tensor(F32, ())}
    )


def test_scalar_update_copied_after_its_inputs_are_overwritten() -> None:
    """p is written in place after the kernel that reads it for m'; m' then
    goes through a copy, which must copy the stored m', not compute it again
    from the new p."""
    graph = scalar_momentum_graph()
    assert [k.kind for k in program(graph).kernels][-1] == "copy"
    args = {"lr": np.array(0.5, np.float32), "p": np.array(-1.7, np.float32), "m": np.array(0.25, np.float32)}
    check_all(graph, args, TOL[F32])


@functools.cache
def matmul_plus_one_hot_graph() -> Graph:
    """logits + one_hot(labels): the one_hot could join the matmul's epilogue."""

    def build(b, v):
        logits = b.matmul(v["x"], v["w"], transpose_b=True)
        return {"out": b.add(logits, b.one_hot(v["y"], num_classes=5, dtype="f32"))}

    inputs = {"x": tensor(F32, ("B", 7)), "w": tensor(F32, (5, 7)), "y": tensor("i64", ("B",))}
    return make_graph("matmul_plus_one_hot", inputs, build)


def test_one_hot_stays_out_of_a_matmul_epilogue() -> None:
    """one_hot computes from the loop index, which the epilogue (run on the
    matmul's register tiles) does not have: it gets a kernel of its own."""
    graph = matmul_plus_one_hot_graph()
    assert [ops for ops in kernel_ops(program(graph)) if "matmul" in ops] == [["matmul", "add"]]
    rng = np.random.default_rng(30)
    for batch in (1, 9):
        args = {"x": draw("real", (batch, 7), rng, F32), "w": draw("real", (5, 7), rng, F32)}
        args["y"] = rng.integers(0, 5, batch)
        check_all(graph, args, TOL[F32], f"B={batch}")


@functools.cache
def matmul_of_scalar_views_graph() -> Graph:
    """Matmul operands that are views of inline scalars: a reshaped constant,
    a broadcast scalar argument, a transposed reshape of a size."""

    def build(b, v):
        ones = b.reshape(b.constant(value=2.0, dtype="f64"), shape=[1, 1])
        filled = b.broadcast_to(v["s"], shape=[3, "B"])
        count = b.reshape(b.size(v["x"], axes=[0], dtype="f64"), shape=[1, 1])
        return {
            "constant": b.matmul(ones, v["row"]),
            "broadcast": b.matmul(filled, v["x"]),
            "size": b.matmul(b.transpose(count, perm=[1, 0]), v["row"], transpose_a=True),
        }

    inputs = {"x": tensor(F64, ("B", 5)), "row": tensor(F64, (1, 5)), "s": tensor(F64, ())}
    return make_graph("matmul_of_scalar_views", inputs, build)


def test_matmul_of_views_of_inline_scalars() -> None:
    """A matmul reads its operands from memory, where a constant or scalar
    computation computed inline has no buffer: such views are stored first."""
    graph = matmul_of_scalar_views_graph()
    rng = np.random.default_rng(29)
    for batch in (1, 4):
        args = {a.name: draw("real", a.type.concrete_shape({"B": batch}), rng, F64) for a in graph.arguments}
        check_all(graph, args, TOL[F64], f"B={batch}")


@functools.cache
def transposed_update_graph() -> Graph:
    def build(b, v):
        p, q = v["p"], v["q"]
        return {"y": b.mul(p, 2.0)}, {"p": b.transpose(p, perm=[1, 0]), "q": b.add(q, b.transpose(q, perm=[1, 0]))}

    params = {"p": tensor(F32, (7, 7)), "q": tensor(F32, (17, 17))}
    return make_graph("transposed_update", {}, build, params=params)


def test_update_that_reads_its_param_transposed_goes_through_a_copy() -> None:
    """p' = transpose(p) and q' = q + transpose(q) read elements of the old
    value that another index has already overwritten, were they written in
    place: each goes to the workspace, then a copy kernel writes it back."""
    graph = transposed_update_graph()
    plan = program(graph)
    lowered = plan.graph
    copies = [k for k in plan.kernels if k.copy]
    assert [k.name for k in copies] == ["copy_p", "copy_q"]
    assert plan.kernels[-2:] == copies
    for name, kernel in zip(("p", "q"), copies, strict=True):
        new = lowered.updates[name]
        assert plan.buffers[new].region.startswith("workspace:")
        assert kernel.copy == (new, lowered.argument(name))
    rng = np.random.default_rng(28)
    args = {"p": rng.standard_normal((7, 7)).astype(np.float32), "q": rng.standard_normal((17, 17)).astype(np.float32)}
    actual, expected = run_both(graph, args)
    np.testing.assert_array_equal(actual.updates["p"], args["p"].T)
    np.testing.assert_array_equal(actual.updates["q"], args["q"] + args["q"].T)
    np.testing.assert_array_equal(actual.outputs["y"], expected.outputs["y"])


@functools.cache
def reshape_of_transpose_graph() -> Graph:
    def build(b, v):
        flat = b.reshape(b.transpose(v["x"], perm=[0, 2, 1]), shape=["B", 12])
        return {"y": b.exp(flat), "z": b.add(flat, v["row"])}

    return make_graph("reshape_of_transpose", {"x": tensor(F32, ("B", 4, 3)), "row": tensor(F32, (12,))}, build)


def test_reshape_of_a_transpose_is_copied_once() -> None:
    """[B,4,3] -> transpose [B,3,4] -> reshape [B,12] is no strided view of x:
    one kernel stores the transposed copy, then both consumers read it."""
    graph = reshape_of_transpose_graph()
    plan = program(graph)
    ops = kernel_ops(plan)
    assert ops[0] == ["transpose"]
    copy = plan.kernels[0].stores[0]
    assert plan.buffers[copy].region.startswith("workspace:")
    assert sorted(map(tuple, ops[1:])) == [("add",), ("exp",)]
    rng = np.random.default_rng(29)
    for batch in (1, 5, 33):
        args = {"x": draw("real", (batch, 4, 3), rng, F32), "row": draw("real", (12,), rng, F32)}
        actual, expected = run_both(graph, args)
        np.testing.assert_array_equal(actual.outputs["z"], expected.outputs["z"])
        assert_matches(actual.outputs["y"], expected.outputs["y"], Tol(transcendental_rtol(F32)), f"y B={batch}")


@functools.cache
def reshaped_output_graph() -> Graph:
    def build(b, v):
        return {"flat": b.reshape(b.transpose(v["x"], perm=[1, 0]), shape=[4 * 6])}

    return make_graph("reshaped_output", {"x": tensor(F32, (4, 6))}, build)


def test_reshape_of_a_transpose_as_an_output() -> None:
    """The reshape is itself the stored output; the transpose below it still needs its copy."""
    graph = reshaped_output_graph()
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    actual, _ = run_both(graph, {"x": x})
    np.testing.assert_array_equal(actual.outputs["flat"], x.T.reshape(-1))


@pytest.mark.parametrize(
    ("shape", "new_shape"),
    [((0, 4), (4, 0)), ((0, 4), (0,)), ((3, 0, 2), (0, 6)), (("B", 0), (0, "B")), (("B", 0, 3), ("B", 3, 0))],
)
def test_reshape_of_a_tensor_with_no_elements(shape: tuple, new_shape: tuple) -> None:
    """A static dimension of 0 leaves nothing to lay out: any reshape is a
    view (fusion took it for a copy of the argument's producer, and there is none)."""

    def build(b, v):
        return {"y": b.exp(b.reshape(v["x"], shape=list(new_shape)))}

    graph = make_graph("reshape_empty", {"x": tensor(F32, shape)}, build)
    x = np.zeros([3 if d == "B" else d for d in shape], np.float32)
    actual, expected = run_both(graph, {"x": x})
    assert actual.outputs["y"].shape == expected.outputs["y"].shape == tuple(3 if d == "B" else d for d in new_shape)
