"""How closely native results must match the reference interpreter's.

A correct native backend does not reproduce the reference bit for bit. It
rounds differently: exp, log and tanh are vector polynomials within a few
ulp (about 8 in float32, 4 in float64: compiler/codegen/vecmath.py), sums
and matmuls add in another order (lane by lane, then across lanes: for n
terms, up to about n/8 ulp of the sum of their magnitudes), mean multiplies
by 1/n. How far such differences travel through a random chain of ops
depends on the chain (a difference of close values, a division by a small
one, a softmax of large logits), so no fixed rtol suits every program. The
bound is measured instead, by Monte Carlo arithmetic:

- `run(..., noise=rng)` runs the reference interpreter with every float
  argument, and every float result of an op that rounds, moved by
  NOISE_ULPS/2 to NOISE_ULPS ulp of its scale in a random direction
  (element by element).
  The scale of a result is the larger of |result| and the op applied to the
  magnitudes of its inputs: for a sum that is the sum of |terms|, for a
  matmul |A| @ |B|, so long reductions get room for their summation order.
  Ops whose every result equals one of their inputs (max, relu, select, a
  layout op) round nothing and are left alone, so ties stay ties;
- the noisy runs use `error_model(graph)`: the graph with mean, softmax and
  log_softmax expanded into the primitives the native backend computes them
  with (compiler/lower.py), so that the noise follows each rounding step (a
  log_softmax near 0 is off by the rounding of its sum, far more than a few
  ulp of its result);
- an element's tolerance is SAFETY times the largest distance of NOISY_RUNS
  such runs from an exact run of the error model, or NOISE_ULPS ulp of the
  scale of its last rounding when that is larger (moves that happen to
  cancel in every run must still leave room for the last op's own error),
  plus the smallest normal number (subnormal results are flushed
  differently by vector and scalar code). Native results are compared with
  the reference's run of the graph itself, so a wrong expansion is still
  caught: it moves the exact and the noisy runs of the model alike.

NOISE_ULPS = 64 covers a few ulp per op and the ordering of sums of up to
about 500 terms; SAFETY = 4 absorbs the chance that random directions
partly cancel. So float64 results get about 256 * 2.2e-16 = 6e-14 of their
scale, float32 ones 3e-5, more where the program amplifies rounding, and an
element whose noisy runs cross a threshold (a relu's kink, a comparison)
gets a tolerance as wide as the jump. Integer and bool results must match
exactly: the generator feeds comparisons and casts to integers only exact
values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ember.compiler.lower import lower_for_codegen
from ember.ir import DType, Graph, Node, RunResult, Value
from ember.ir.interpreter import bind_symbols, evaluate

NOISE_ULPS = 64
SAFETY = 4.0
NOISY_RUNS = 6
SAMPLES = 8


def error_model(graph: Graph) -> Graph:
    """The graph the noisy runs use: `graph` as the native backend computes it
    (mean, softmax and log_softmax expanded into their primitives)."""
    return lower_for_codegen(graph.clone()[0])


def run(graph: Graph, arguments: Mapping[str, np.ndarray], noise: np.random.Generator | None = None) -> RunResult:
    """`ir.interpret`, or with `noise` one Monte Carlo run (see the module doc)."""
    env = values(graph, arguments, noise)
    return RunResult(
        outputs={k: env[v] for k, v in graph.outputs.items()},
        updates={k: env[v] for k, v in graph.updates.items()},
    )


def scales(graph: Graph, arguments: Mapping[str, np.ndarray]) -> RunResult:
    """The scale of the last rounding of each float output and update (see
    `values`), the floor of their tolerances, named like a run's results."""
    found: dict[Value, np.ndarray] = {}
    values(graph, arguments, scales=found)
    pick = lambda named: {k: found[v] for k, v in named.items() if v in found}
    return RunResult(outputs=pick(graph.outputs), updates=pick(graph.updates))


def values(
    graph: Graph,
    arguments: Mapping[str, np.ndarray],
    noise: np.random.Generator | None = None,
    scales: dict[Value, np.ndarray] | None = None,
) -> dict[Value, np.ndarray]:
    """Every value of `graph` in one run of `run`; with `scales`, also the
    scale of each float value's rounding: for an op that rounds, the larger
    of |result| and the op on its inputs' magnitudes; for an argument or an
    op that picks elements, |value|; for a constant, 0; layout ops move the
    scales of their input."""
    bindings = bind_symbols(graph, arguments)
    env: dict[Value, np.ndarray] = {}
    with np.errstate(all="ignore"):
        for a in graph.arguments:
            array = arguments[a.name]  # type: ignore[index]
            env[a] = _perturb(array, np.abs(array), noise) if noise is not None else array
            if scales is not None and array.dtype.kind == "f":
                scales[a] = np.abs(array)
        for node in graph.nodes:
            inputs = [env[v] for v in node.inputs]
            result = evaluate(node.op, node.attrs, inputs, node.output.type, bindings)
            if result.dtype.kind == "f" and (noise is not None or scales is not None):
                rounds = _rounds(node.op.kind, result, inputs)
                scale = _scale(node, result, inputs, rounds, bindings, scales)
                if noise is not None and rounds:
                    result = _perturb(result, scale, noise)
                if scales is not None:
                    scales[node.output] = scale
            env[node.output] = result
    return env


def _scale(node: Node, result: np.ndarray, inputs: list[np.ndarray], rounds: bool, bindings, scales) -> np.ndarray:
    op, attrs, out = node.op, node.attrs, node.output.type
    if rounds:
        magnitudes = [np.abs(x) if x.dtype.kind in "fi" else x for x in inputs]
        scale = np.abs(evaluate(op, attrs, magnitudes, out, bindings))
        return np.maximum(np.abs(result), np.where(np.isfinite(scale), scale, 0))
    if op.kind == "source":
        return np.zeros(result.shape)
    if op.kind == "layout" and scales is not None and node.inputs[0] in scales:
        return evaluate(op, attrs, [scales[node.inputs[0]]], out.with_dtype(DType.float64), bindings)
    return np.abs(result)


def _rounds(kind: str, result: np.ndarray, inputs: list[np.ndarray]) -> bool:
    """Whether a float result may hold rounded values: not a constant or
    layout op, and not an op whose results are some of its inputs' elements
    (or zero), judged by a few nonzero elements spread over the result."""
    if result.dtype.kind != "f" or kind in ("source", "layout"):
        return False
    nonzero = result[result != 0]
    pool = np.concatenate([x.ravel() for x in inputs if x.dtype.kind == "f"] or [np.zeros(0)])
    sample = nonzero[:: max(1, nonzero.size // SAMPLES)]
    return not all(np.any(pool == v) for v in sample)


def _perturb(array: np.ndarray, scale: np.ndarray, noise: np.random.Generator) -> np.ndarray:
    """`array` moved by NOISE_ULPS/2 to NOISE_ULPS ulp of `scale`, each element
    in a random direction (the sizes vary, so that two moves seldom cancel)."""
    if array.dtype.kind != "f":
        return array
    ulp = np.finfo(array.dtype).eps * NOISE_ULPS
    step = noise.uniform(0.5, 1.0, array.shape) * noise.choice([-1.0, 1.0], array.shape)
    return (array + step * ulp * scale).astype(array.dtype)


Results = dict[str, np.ndarray]
"""Outputs and updates of one run, by name (update names are argument names)."""


def results(run_result: RunResult) -> Results:
    return {**run_result.outputs, **run_result.updates}


def tolerances(centre: Results, noisy: list[Results], floors: Results) -> dict[str, np.ndarray | None]:
    """Per result, the allowed |native - reference| per element (None: exact):
    from the noisy runs of the error model and its exact run `centre`, and
    at least the noise of its last rounding (`floors`: the scales)."""
    out: dict[str, np.ndarray | None] = {}
    for name, reference in centre.items():
        if reference.dtype.kind != "f":
            out[name] = None
            continue
        with np.errstate(all="ignore"):
            spread = np.max([np.abs(r[name].astype(np.float64) - reference) for r in noisy], axis=0)
        spread = np.where(np.isnan(spread), np.inf, spread)
        floor = NOISE_ULPS * float(np.finfo(reference.dtype).eps) * floors.get(name, 0.0)
        out[name] = SAFETY * np.maximum(spread, floor) + float(np.finfo(reference.dtype).tiny)
    return out


@dataclass
class Difference:
    """Where a native result left its tolerance."""

    name: str  # of an output or update
    detail: str
    step: int = 0  # of the case's steps, from 0

    def __str__(self) -> str:
        return f"{self.name}{f' (step {self.step + 1})' if self.step else ''}: {self.detail}"


def compare(actual: Results, exact: Results, tolerance: Mapping[str, np.ndarray | None]) -> list[Difference]:
    """Every result of `exact` that `actual` misses: a wrong dtype or shape,
    an integer or bool that differs, NaN or infinity where the reference
    has another value, or a float outside its tolerance."""
    found = []
    for name, reference in exact.items():
        if name not in actual:
            found.append(Difference(name, "missing from the native results"))
            continue
        value = np.asarray(actual[name])
        if value.dtype != reference.dtype or value.shape != reference.shape:
            found.append(
                Difference(
                    name, f"native {value.dtype}{list(value.shape)}, reference {reference.dtype}{list(reference.shape)}"
                )
            )
            continue
        limit = tolerance[name]
        if limit is None:
            bad = value != reference
            error = bad.astype(np.float64)
        else:
            with np.errstate(all="ignore"):
                error = np.abs(value.astype(np.float64) - reference)
                finite = np.isfinite(reference)
                bad = np.where(
                    finite, ~(error <= limit), ~((value == reference) | (np.isnan(value) & np.isnan(reference)))
                )
        if np.any(bad):
            found.append(Difference(name, _describe(value, reference, limit, bad)))
    return found


def _describe(value: np.ndarray, reference: np.ndarray, limit: np.ndarray | None, bad: np.ndarray) -> str:
    where = np.argwhere(bad)
    index = tuple(where[0])
    text = f"{len(where)} of {bad.size} elements differ; at {list(index)}: "
    text += f"native {value[index]!r}, reference {reference[index]!r}"
    if limit is not None:
        text += f", allowed difference {float(limit[index]):.3g}"
    return text
