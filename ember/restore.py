"""Rebuilding a Program from a checkpoint: `ember.load`, unpickling, copies.

Nothing in a checkpoint is trusted. Every setting must have its exact type
and range; the graphs must parse, verify, have the interface ember traces,
and agree with each other and with the settings; every parameter and
optimizer-state array must be present with exactly the shape and dtype the
program needs (nothing is broadcast or converted). Any mismatch is a
CheckpointError that names the field and what was expected."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from .compiler import OPTIMIZERS, Optimizer, dce
from .compiler.clipping import GradientClipping
from .compiler.optimizers import PARAMS, STEP
from .compiler.schedules import StepSchedule
from .ir import BATCH, CheckpointError, ConfigError, DType, EmberError, Graph, TensorType, parse, print_graph, verify
from .nn.losses import DECISIONS, REDUCTIONS, loss_info_of
from .program import BACKENDS, CLIP_GRAD_SETTING, LR_SCHEDULE_SETTING, Program
from .runtime import checkpoint as checkpoint_format
from .runtime.checkpoint import Checkpoint, checkpoint_from_bytes
from .state_dict import INTEGER_DTYPES, StateLayout
from .tensor import RNG_INPUTS
from .trace import EVALUATE, INPUT, LOSS, MODEL, PREDICT, PREDICTION, SAMPLE_WEIGHT, TARGET, names

SETTINGS = ("format", "version", "dtype", "batch_size", "seed", "backend", "lr", "loss", "optimizer")
"""The settings of a version 1 checkpoint; version 2 adds `rng`."""

RNG_STEP_SETTING = "rng_step"
"""The step counter of random numbers (dropout masks): optional, 0 when absent."""

PARAM_GROUPS = "param_groups"
"""Each param group's hyperparameters at the time of saving (optional: the
groups as compiled, with setting `lr` for all)."""

OPTIONAL_SETTINGS = ("frozen", "state_dict", RNG_STEP_SETTING, PARAM_GROUPS, CLIP_GRAD_SETTING, LR_SCHEDULE_SETTING)
"""Settings a checkpoint may lack (written since params could be frozen,
buffers exist, dropout draws random numbers and gradients clip): no frozen
params, a state dict of every param and buffer, random numbers from step 0,
no clipping and no schedule in the step."""

DTYPES = ("float32", "float64")
INTEGER_INPUTS = ("int64", "int32")
PICKLED = "of a pickled Program"


@dataclass(frozen=True)
class Settings:
    """A checkpoint's settings, each checked on its own."""

    dtype: DType
    batch_size: int
    seed: int
    backend: str
    lr: float
    loss: dict[str, Any]
    optimizer: Optimizer | None
    rng: dict[str, Any] | None  # the shuffling RNG's state; None in version 1 (restart from the seed)
    rng_step: int  # the step counter of random numbers (dropout masks)
    frozen: tuple[str, ...]
    param_groups: Any  # each group's runtime hyperparameters: checked against the optimizer later
    state_layout: StateLayout | None  # None: the default layout
    clipping: GradientClipping | None
    lr_schedule: StepSchedule | None


def program_from_checkpoint(checkpoint: Checkpoint, source: str, backend: str | None = None) -> Program:
    """The Program `checkpoint` describes, on `backend` (default: the backend
    it was saved from). Errors name the checkpoint `source`."""
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    try:
        return _restore(checkpoint, backend)
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {source}: {e}") from None


def program_from_bytes(data: bytes) -> Program:
    """Unpickle a Program (see `Program.__reduce__`)."""
    return program_from_checkpoint(checkpoint_from_bytes(data, f"the checkpoint {PICKLED}"), PICKLED)


def _restore(checkpoint: Checkpoint, backend: str | None) -> Program:
    settings = read_settings(checkpoint.meta)
    predict, model, evaluate = read_graphs(upgrade_texts(checkpoint.texts, checkpoint.meta["version"]), settings.dtype)
    check_training_settings(settings, model)
    groups = None
    if settings.param_groups is not None and settings.optimizer is not None:
        groups = read_param_groups(settings.param_groups, settings.optimizer)
    check_model_settings(settings, predict)
    dtype = settings.dtype.numpy
    # checked before compiling: the arrays in the file bound what the program allocates
    params = exact_arrays("parameter", checkpoint.params, {p.name: (p.type.shape, dtype) for p in predict.params})
    buffers = exact_arrays("buffer", checkpoint.buffers, {b.name: (b.type.shape, dtype) for b in predict.buffers})
    if settings.optimizer is not None:
        try:
            settings.optimizer.resolve([p.name for p in predict.params], settings.frozen)
        except ConfigError as e:
            raise CheckpointError(f"setting 'optimizer': {e}") from None
    try:
        prog = Program(
            predict_graph=predict,
            params=params,
            buffers=buffers,
            evaluate_graph=evaluate,
            dtype=settings.dtype,
            batch_size=settings.batch_size,
            seed=settings.seed,
            backend=backend or settings.backend,
            loss_graph=model,
            optimizer=settings.optimizer,
            loss_info=settings.loss,
            lr=settings.lr if groups is None else None,
            param_groups=groups,
            frozen=settings.frozen,
            state_layout=settings.state_layout,
            clipping=settings.clipping,
            lr_schedule=settings.lr_schedule,
        )
    except EmberError as e:
        raise CheckpointError(f"cannot build the program it describes: {e}") from None
    state_layout = {name: (value.shape, value.dtype) for name, value in prog.optimizer_state.items()}
    state = exact_arrays("optimizer state", checkpoint.state, state_layout)
    if STEP in state and not _is_step(state[STEP]):
        raise CheckpointError(f"optimizer state {STEP!r} must be a whole number >= 0, got {state[STEP]}")
    prog._restore(state, settings.rng, settings.rng_step)
    return prog


# -- settings ----------------------------------------------------------------
def read_settings(meta: dict[str, Any]) -> Settings:
    """Check each setting's type and range (not yet against the graphs)."""
    expected = SETTINGS if meta["version"] == 1 else (*SETTINGS, "rng")
    _require_names("setting", meta, [*expected, *(name for name in OPTIONAL_SETTINGS if name in meta)])
    _expect("dtype", meta["dtype"] in DTYPES, " or ".join(map(repr, DTYPES)), meta)
    _expect("batch_size", _is_int(meta["batch_size"]) and meta["batch_size"] >= 1, "an integer >= 1", meta)
    _expect("seed", _is_int(meta["seed"]) and meta["seed"] >= 0, "an integer >= 0", meta)
    _expect("backend", meta["backend"] in BACKENDS, f"one of {', '.join(BACKENDS)}", meta)
    lr_ok = _is_real(meta["lr"]) and meta["lr"] >= 0 and _finite_in(meta["lr"], DType[meta["dtype"]])
    _expect("lr", lr_ok, f"a finite {meta['dtype']} number >= 0", meta)
    _expect("loss", isinstance(meta["loss"], dict), "an object", meta)
    if "rng" in meta:
        _expect("rng", _is_pcg64_state(meta["rng"]), "the state of a NumPy PCG64 generator", meta)
    if RNG_STEP_SETTING in meta:
        step = meta[RNG_STEP_SETTING]
        _expect(RNG_STEP_SETTING, _is_int(step) and 0 <= step < 2**63, "an integer in [0, 2**63)", meta)
    frozen = meta.get("frozen", [])
    _expect("frozen", _is_name_list(frozen), "a list of distinct parameter names", meta)
    layout = meta.get("state_dict")
    if layout is not None:
        _expect("state_dict", _is_state_layout(layout), "a list of distinct [name, null or integer dtype] pairs", meta)
    optimizer = read_optimizer(meta["optimizer"])
    return Settings(
        dtype=DType[meta["dtype"]],
        batch_size=meta["batch_size"],
        seed=meta["seed"],
        backend=meta["backend"],
        lr=float(meta["lr"]),
        loss=meta["loss"],
        optimizer=optimizer,
        rng=meta.get("rng"),
        rng_step=meta.get(RNG_STEP_SETTING, 0),
        frozen=tuple(frozen),
        param_groups=meta.get(PARAM_GROUPS),
        state_layout=StateLayout(tuple((name, dtype) for name, dtype in layout)) if layout is not None else None,
        clipping=read_clipping(meta.get(CLIP_GRAD_SETTING)),
        lr_schedule=read_lr_schedule(meta.get(LR_SCHEDULE_SETTING)),
    )


def read_lr_schedule(value: Any) -> StepSchedule | None:
    """The schedule compiled into the step: {'name': ..., 'arguments': {...}}."""
    if value is None:
        return None
    if not (isinstance(value, dict) and set(value) == {"name", "arguments"} and isinstance(value["arguments"], dict)):
        raise CheckpointError(
            f"setting {LR_SCHEDULE_SETTING!r} must be {{'name': ..., 'arguments': {{...}}}}, got {value!r}"
        )
    if not isinstance(value["name"], str):
        raise CheckpointError(f"setting {LR_SCHEDULE_SETTING!r}: name must be a string, got {value['name']!r}")
    try:
        return StepSchedule.of(value["name"], **value["arguments"])
    except ConfigError as e:
        raise CheckpointError(f"setting {LR_SCHEDULE_SETTING!r}: {e}") from None


def read_clipping(value: Any) -> GradientClipping | None:
    """The gradient clipping a checkpoint records: {'max_norm': x, 'value': y}, each null or a number > 0."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"max_norm", "value"}:
        raise CheckpointError(f"setting {CLIP_GRAD_SETTING!r} must be {{'max_norm': ..., 'value': ...}}, got {value!r}")
    try:
        return GradientClipping(max_norm=value["max_norm"], value=value["value"]) or None
    except ConfigError as e:
        raise CheckpointError(f"setting {CLIP_GRAD_SETTING!r}: {e}") from None


def read_optimizer(value: Any) -> Optimizer | None:
    """The optimizer a checkpoint names, with its hyperparameters (ones
    added to ember since the file was written take their defaults) and its
    param groups as compiled (default: one group of every param)."""
    if value is None:
        return None
    keys = {"name", "hyperparameters"}
    if not (
        isinstance(value, dict) and keys <= set(value) <= {*keys, PARAM_GROUPS} and _is_key(value["name"], OPTIMIZERS)
    ):
        raise CheckpointError(
            f"setting 'optimizer' must be null or {{'name': one of {', '.join(OPTIMIZERS)}, "
            f"'hyperparameters': {{...}}, 'param_groups': [...]}}, got {value!r}"
        )
    cls = OPTIMIZERS[value["name"]]
    hyper = _hyperparameters(cls, value["hyperparameters"], "hyperparameters", partial=True)
    groups = value.get(PARAM_GROUPS)
    if groups is not None:
        if not (isinstance(groups, list) and groups and all(isinstance(g, dict) for g in groups)):
            raise CheckpointError(f"setting 'optimizer': param_groups must be a list of objects, got {groups!r}")
        for i, group in enumerate(groups):
            if not _is_name_list(group.get(PARAMS)):
                raise CheckpointError(f"setting 'optimizer': param_groups[{i}].params must be a list of names")
            where = f"param_groups[{i}]"
            settings = {k: v for k, v in group.items() if k != PARAMS}
            groups[i] = {PARAMS: group[PARAMS], **_hyperparameters(cls, settings, where, partial=True)}
    optimizer = object.__new__(cls)
    try:
        Optimizer.__init__(optimizer, groups, **{**cls.DEFAULTS, **hyper})
    except ConfigError as e:
        raise CheckpointError(f"setting 'optimizer': {e}") from None
    return optimizer


def read_param_groups(value: Any, optimizer: Optimizer) -> list[dict[str, Any]]:
    """Setting `param_groups`: each group's numeric hyperparameters at saving
    time, one object per group of the optimizer, each value of its kind."""
    count = len(optimizer.param_groups)
    if not (isinstance(value, list) and len(value) == count and all(isinstance(g, dict) for g in value)):
        raise CheckpointError(f"setting {PARAM_GROUPS!r} must be a list of {count} objects, got {value!r}")
    cls = type(optimizer)
    groups = []
    for i, (given, compiled) in enumerate(zip(value, optimizer.param_groups, strict=True)):
        where = f"{PARAM_GROUPS}[{i}]"
        group = _hyperparameters(cls, given, where, partial=False)
        fixed = [k for k, v in group.items() if isinstance(v, bool) or (k in cls.FIXED_ZERO and compiled[k] == 0)]
        changed = [k for k in fixed if group[k] != compiled[k]]
        if changed:
            raise CheckpointError(
                f"setting {where!r}: {changed[0]} must be {compiled[changed[0]]!r}, as the optimizer compiles it"
            )
        try:
            optimizer.check({**compiled, **group}, f"setting {where!r}")
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
        groups.append(group)
    return groups


def _hyperparameters(cls: type[Optimizer], hyper: Any, where: str, partial: bool) -> dict[str, Any]:
    """`hyper`: hyperparameters of `cls`, each of its kind; all of them
    but (when `partial`) flags, which ember added after some checkpoints
    were written (a missing flag takes the class's default)."""
    defaults = cls.DEFAULTS
    required = {k for k, v in defaults.items() if not (partial and isinstance(v, bool))}
    if not isinstance(hyper, dict) or not required <= set(hyper) <= set(defaults):
        newer = " (flags added since may be missing)" if partial else ""
        raise CheckpointError(
            f"setting {where!r}: the hyperparameters of {cls.__name__} must be exactly "
            f"{', '.join(defaults)}{newer}, got {hyper!r}"
        )
    for name, value in hyper.items():
        if not _same_kind(value, defaults[name]):
            raise CheckpointError(
                f"setting {where!r}: {cls.__name__} hyperparameter {name!r} must be "
                f"{_kind(defaults[name])}, got {value!r}"
            )
    return {name: tuple(v) if isinstance(v, list) else v for name, v in hyper.items()}


def _same_kind(value: Any, default: Any) -> bool:
    """`value` (read from JSON) has the kind of the hyperparameter's default."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, tuple):
        return isinstance(value, list) and len(value) == len(default) and all(_is_real(v) for v in value)
    return _is_real(value)


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, tuple):
        return f"a list of {len(default)} finite numbers"
    return "a finite number"


def _is_pcg64_state(value: Any) -> bool:
    """The shape of `np.random.PCG64().state`: a 128-bit state and odd increment."""
    return (
        isinstance(value, dict)
        and set(value) == {"bit_generator", "state", "has_uint32", "uinteger"}
        and value["bit_generator"] == "PCG64"
        and isinstance(value["state"], dict)
        and set(value["state"]) == {"state", "inc"}
        and all(_is_int(v) and 0 <= v < 2**128 for v in value["state"].values())
        and value["state"]["inc"] % 2 == 1
        and value["has_uint32"] in (0, 1)
        and _is_int(value["has_uint32"])
        and _is_int(value["uinteger"])
        and 0 <= value["uinteger"] < 2**32
    )


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value) and len(set(value)) == len(value)


def _is_state_layout(value: Any) -> bool:
    pairs = isinstance(value, list) and all(
        isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and (v[1] is None or v[1] in INTEGER_DTYPES)
        for v in value
    )
    return pairs and _is_name_list([name for name, _ in value])


def check_model_settings(settings: Settings, predict: Graph) -> None:
    """Frozen params and the state dict's entries against the graph: frozen
    names are params; the state dict names params and buffers only, every
    param among them, and only buffers may be integers."""
    params, buffers = [p.name for p in predict.params], [b.name for b in predict.buffers]
    unknown = [name for name in settings.frozen if name not in params]
    if unknown:
        raise CheckpointError(f"setting 'frozen' names {unknown[0]!r}, which is not a param of graph 'predict'")
    if settings.state_layout is None:
        return
    names = settings.state_layout.names
    for name, dtype in settings.state_layout.entries:
        if name not in params and name not in buffers:
            raise CheckpointError(
                f"setting 'state_dict' names {name!r}, which is no param or buffer of graph 'predict'"
            )
        if dtype is not None and name in params:
            raise CheckpointError(f"setting 'state_dict' gives param {name!r} an integer dtype {dtype}")
    missing = [name for name in params if name not in names]
    if missing:
        raise CheckpointError(f"setting 'state_dict' must name every param; {missing[0]!r} is missing")


def _is_key(value: Any, table: dict[str, Any]) -> bool:
    return isinstance(value, str) and value in table  # JSON lists and objects are not hashable


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A JSON number that is finite as a float64."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond float64
        return False


def _finite_in(value: float, dtype: DType) -> bool:
    """`value` stays finite in `dtype` (1e39 is inf as a float32)."""
    with np.errstate(over="ignore"):
        return bool(np.isfinite(dtype.numpy.type(value)))


def _is_step(value: np.ndarray) -> bool:
    return bool(np.isfinite(value) and value >= 0 and value == np.floor(value))


def _expect(name: str, ok: bool, expected: str, meta: dict[str, Any]) -> None:
    if not ok:
        raise CheckpointError(f"setting {name!r} must be {expected}, got {meta[name]!r}")


# -- graphs ------------------------------------------------------------------
OLD_GELU = re.compile(r"(= )gelu(?= )")
"""Op `gelu` in a line of IR text (`%3: f32[B,8] = gelu %2`)."""

EXACT_GELU_VERSION = 3
"""The first checkpoint format version whose op `gelu` is the exact form."""


def upgrade_texts(texts: dict[str, str], version: int) -> dict[str, str]:
    """The IR texts of a checkpoint of format `version` in today's op names:
    before version 3, op `gelu` was the tanh approximation, now `gelu_tanh`
    (`gelu` is the exact form, as torch.nn.GELU()). While this ember still
    writes an older version number, its own files hold the exact form under
    that number, and are read as it wrote them."""
    if version < EXACT_GELU_VERSION <= checkpoint_format.VERSION:
        return {name: OLD_GELU.sub(r"\1gelu_tanh", text) for name, text in texts.items()}
    return texts


def read_graphs(texts: dict[str, str], dtype: DType) -> tuple[Graph, Graph | None, Graph | None]:
    """The `predict` graph and, for a training program, the `model` graph
    (forward pass and loss, traced in training mode) and the `evaluate`
    graph (the same in eval mode; absent from older checkpoints, where
    `model` serves), each checked. The forward pass of `evaluate` (or
    `model`) must be `predict`, and all three must take the same params and
    buffers; only `model` may update anything, and only buffers."""
    unknown = [name for name in texts if name not in (PREDICT, MODEL, EVALUATE)]
    if unknown:
        raise CheckpointError(
            f"unknown IR text {unknown[0]!r}; expected 'predict' (and 'model', 'evaluate' for training)"
        )
    if PREDICT not in texts:
        raise CheckpointError("IR text 'predict' is missing")
    predict = _parse_graph(PREDICT, texts[PREDICT])
    inputs = [a for a in predict.inputs if a.name not in RNG_INPUTS]
    count = (len(inputs) or 1, len(predict.outputs) or 1)  # inputs and outputs
    _check_interface(predict, names(INPUT, count[0]), names(PREDICTION, count[1]), dtype)
    if MODEL not in texts:
        if EVALUATE in texts:
            raise CheckpointError("IR text 'evaluate' needs IR text 'model' (a training program has both)")
        return predict, None, None
    model = _read_loss_graph(MODEL, texts[MODEL], dtype, count)
    evaluate = _read_loss_graph(EVALUATE, texts[EVALUATE], dtype, count) if EVALUATE in texts else None
    if evaluate is not None and _weighted(model) != _weighted(evaluate):
        raise CheckpointError(f"graphs 'model' and 'evaluate' must both take input {SAMPLE_WEIGHT}, or neither")
    for graph in (model, evaluate or model):
        _check_same_model(graph, predict)
    _check_forward(evaluate or model, predict)
    return predict, model, evaluate


def _class_weight(weight: Any, out: TensorType) -> list[float] | None:
    """A loss's class weights: null, or one finite number per class."""
    classes = out.shape[1] if out.rank == 2 else None
    if weight is None:
        return None
    if not (isinstance(weight, list) and len(weight) == classes and all(_is_real(w) for w in weight)):
        raise CheckpointError(f"setting 'loss' must have 'class_weight' null or a list of {classes} finite numbers")
    return weight


def _weighted(graph: Graph) -> bool:
    return any(a.name == SAMPLE_WEIGHT for a in graph.inputs)


def _read_loss_graph(name: str, text: str, dtype: DType, count: tuple[int, int]) -> Graph:
    """A loss graph of `count` = (inputs, outputs): a target per output, the
    total loss and (for several outputs) each output's loss."""
    graph = _parse_graph(name, text)
    inputs, outputs = count
    losses = [LOSS, *(names(LOSS, outputs) if outputs > 1 else [])]
    expected_outputs = [*losses, *names(PREDICTION, outputs)]
    weighted = _weighted(graph)  # older programs, and those of scalar custom losses, take no sample weights
    expected_inputs = [*names(INPUT, inputs), *names(TARGET, outputs), *([SAMPLE_WEIGHT] if weighted else [])]
    _check_interface(graph, expected_inputs, expected_outputs, dtype)
    if weighted and graph.argument(SAMPLE_WEIGHT).type != TensorType(dtype, (BATCH,)):
        raise CheckpointError(f"graph {name!r}: input {SAMPLE_WEIGHT} must be {dtype}[{BATCH}]")
    if graph.outputs[LOSS].type.shape != () or graph.outputs[LOSS].type.dtype != dtype:
        raise CheckpointError(f"graph {name!r} must output a scalar {dtype} loss, got {graph.outputs[LOSS].type}")
    return graph


def _check_same_model(graph: Graph, predict: Graph) -> None:
    """`graph` takes exactly the params and buffers of `predict`."""
    want = [f"{a.role} %{a.name}: {a.type}" for a in [*predict.params, *predict.buffers]]
    got = [f"{a.role} %{a.name}: {a.type}" for a in [*graph.params, *graph.buffers]]
    if want != got:
        first = next(i for i, (w, g) in enumerate(itertools.zip_longest(want, got, fillvalue="(nothing)")) if w != g)
        shown = got[first] if first < len(got) else "(nothing)"
        raise CheckpointError(
            f"graph {graph.name!r} must take the params and buffers of graph 'predict': "
            f"argument {first + 1} of them is {shown!r}, expected {([*want, '(nothing)'])[first]!r}"
        )


def _check_forward(graph: Graph, predict: Graph) -> None:
    """`predict` computes the forward pass of `graph`, line for line."""
    implied, stored = print_graph(_forward(graph)).splitlines(), print_graph(_forward(predict)).splitlines()
    for number, (want, got) in enumerate(itertools.zip_longest(implied, stored, fillvalue="(nothing)"), 1):
        if want != got:
            raise CheckpointError(
                f"graph 'predict' does not compute the forward pass of graph {graph.name!r}: "
                f"line {number} of that forward pass is {want.strip()!r}, got {got.strip()!r}"
            )


def _parse_graph(name: str, text: str) -> Graph:
    try:
        graph = verify(parse(text))
    except EmberError as e:
        raise CheckpointError(f"IR text {name!r} is not a valid graph: {e}") from None
    if graph.name != name:
        raise CheckpointError(f"IR text {name!r} must hold graph {name!r}, got graph {graph.name!r}")
    return graph


def _check_interface(graph: Graph, inputs: Sequence[str], outputs: Sequence[str], dtype: DType) -> None:
    """The arguments and outputs ember traces: inputs and outputs by name,
    params and buffers of fixed shape, no optimizer state, no updates but
    of buffers in graph `model`; `x` is `dtype[B, ...]` and every param and
    buffer is `dtype`."""
    where = f"graph {graph.name!r}"
    got_inputs = [a.name for a in graph.inputs if a.name not in RNG_INPUTS]
    for a in graph.inputs:
        if a.name in RNG_INPUTS and a.type != TensorType(DType.int64, ()):
            raise CheckpointError(f"{where}: input {a.name} (of random numbers) must be i64[], got {a.type}")
    if got_inputs != list(inputs):
        raise CheckpointError(f"{where} must have inputs {', '.join(inputs)}, got {', '.join(got_inputs) or 'none'}")
    if sorted(graph.outputs) != sorted(outputs):
        raise CheckpointError(f"{where} must have outputs {', '.join(outputs)}, got {', '.join(graph.outputs)}")
    if graph.state:
        raise CheckpointError(f"{where} must have no optimizer state (the optimizer adds it)")
    buffers = {b.name for b in graph.buffers} if graph.name == MODEL else set()
    for target in graph.updates:
        if target not in buffers:
            raise CheckpointError(
                f"{where} must not update %{target}: only graph 'model' updates, and only buffers "
                "(the optimizer adds the other updates)"
            )
    for argument in graph.inputs:
        x = argument.type
        if argument.name.startswith(TARGET) or argument.name in RNG_INPUTS:
            continue  # the loss fixes the targets' types (check_training_settings); random numbers' checked above
        dtype_ok = x.dtype == dtype or x.dtype.name in INTEGER_INPUTS
        if not dtype_ok or not x.shape or x.shape[0] != BATCH or not x.with_shape(x.shape[1:]).is_static:
            raise CheckpointError(
                f"{where}: input {argument.name} must be {dtype}[{BATCH},...] (or int64, int32) "
                f"with fixed sizes after {BATCH}"
            )
    for p in [*graph.params, *graph.buffers]:
        if p.type.dtype != dtype or not p.type.is_static:
            raise CheckpointError(f"{where}: {p.role} {p.name} must be {dtype} of a fixed shape, got {p.type}")


def _forward(graph: Graph) -> Graph:
    """The forward pass in `graph`: what computes the outputs (`out`, or
    `out0`, ...) from the inputs and the params, under the name `predict`."""
    forward, _ = graph.clone(PREDICT)
    forward.inputs = [a for a in forward.inputs if a.name.startswith(INPUT) or a.name in RNG_INPUTS]
    forward.outputs = {k: v for k, v in forward.outputs.items() if k.startswith(PREDICTION)}
    forward.updates = {}
    return dce(forward)


def check_training_settings(settings: Settings, model: Graph | None) -> None:
    """The loss and optimizer settings against the model graph: none for an
    inference program; for a training one, an optimizer and the loss info
    ember records for the loss that ends the graph."""
    if model is None:
        if settings.optimizer is not None or settings.loss:
            raise CheckpointError(
                "an inference program (no IR text 'model') must have settings optimizer null and loss {}, "
                f"got {settings.optimizer!r} and {settings.loss!r}"
            )
        return
    if settings.optimizer is None:
        raise CheckpointError(
            "setting 'optimizer' must name an optimizer for a training program (with a 'model' graph)"
        )
    outputs = len([k for k in model.outputs if k.startswith(PREDICTION)])
    expected = _expected_losses(settings.loss, model, outputs)
    # JSON text compares types as well as values: true is not 1, 10.0 is not 10
    if json.dumps(settings.loss, sort_keys=True) != json.dumps(expected, sort_keys=True):
        raise CheckpointError(f"setting 'loss' must be {expected!r} for graph 'model', got {settings.loss!r}")


def _expected_losses(given: dict[str, Any], model: Graph, outputs: int) -> dict[str, Any]:
    """The loss info `ember.compile` records for `model`: one loss's, or for
    several outputs `{"losses": [one per output], "weights": [...]}`."""
    if outputs == 1:
        return expected_loss_info(given, model)
    losses, weights = given.get("losses"), given.get("weights")
    if not (isinstance(losses, list) and len(losses) == outputs and all(isinstance(i, dict) for i in losses)):
        raise CheckpointError(f"setting 'loss' must hold 'losses': a list of {outputs} objects, got {given!r}")
    if not (isinstance(weights, list) and len(weights) == outputs and all(_is_real(w) for w in weights)):
        raise CheckpointError(f"setting 'loss' must hold 'weights': a list of {outputs} finite numbers, got {given!r}")
    infos = [expected_loss_info(info, model, i) for i, info in enumerate(losses)]
    return {"losses": infos, "weights": [float(w) for w in weights]}


def expected_loss_info(given: Any, model: Graph, index: int | None = None) -> dict[str, Any]:
    """The loss info `ember.compile` records for the loss `given` describes,
    ending `model` (for output `index` of several). The graph holds the
    loss's computation, so a loss defined by the user loads like a built-in one."""
    if not isinstance(given, dict) or not isinstance(given.get("name"), str):
        raise CheckpointError(f"setting 'loss' must hold the loss's 'name', got {given!r}")
    suffix = "" if index is None else str(index)
    out_name, target_name = PREDICTION + suffix, TARGET + suffix
    reduction = given.get("reduction")
    if reduction not in (*REDUCTIONS, "batchmean") or reduction == "none":
        raise CheckpointError(f"setting 'loss' must have a reduction 'mean', 'sum' or 'batchmean', got {reduction!r}")
    classification = given.get("classification")
    if not isinstance(classification, bool):
        raise CheckpointError(f"setting 'loss' must have 'classification' true or false, got {classification!r}")
    if classification and "decision" in given and given["decision"] not in DECISIONS:  # absent in older files
        raise CheckpointError(f"setting 'loss' must have a 'decision' of {', '.join(DECISIONS)}, got {given!r}")
    ignore = given.get("ignore_index")
    if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)):
        raise CheckpointError(f"setting 'loss' must have an integer 'ignore_index', got {ignore!r}")
    out, target = model.outputs[out_name].type, model.argument(target_name).type
    if (target.dtype != out.dtype and target.dtype.name not in INTEGER_INPUTS) or target.shape[:1] != (BATCH,):
        raise CheckpointError(
            f"graph 'model': target {target_name} must be {out.dtype} or integer [B, ...], got {target}"
        )
    described = SimpleNamespace(
        reduction=reduction, classification=classification, decision=given.get("decision"), ignore_index=ignore
    )
    if "class_weight" in given:  # a class loss, whose mean divides by the targets' class weights
        described.mean_over_class_weights = True
        described.weight = _class_weight(given["class_weight"], out)
    return loss_info_of(given["name"], described, out, target)


# -- arrays --------------------------------------------------------------------
def exact_arrays(
    what: str, given: dict[str, np.ndarray], layout: dict[str, tuple[tuple[int, ...], np.dtype]]
) -> dict[str, np.ndarray]:
    """`given`, which must have exactly the names in `layout` and, for each,
    exactly its (shape, dtype)."""
    _require_names(what, given, layout)
    for name, (shape, dtype) in layout.items():
        got = given[name]
        if got.dtype != dtype or got.shape != tuple(shape):
            raise CheckpointError(
                f"{what} {name!r} must be a {dtype} array of shape {tuple(shape)}, "
                f"got a {got.dtype} array of shape {got.shape}"
            )
    return {name: given[name] for name in layout}


def _require_names(what: str, given: Iterable[str], expected: Iterable[str]) -> None:
    """`given` names exactly the `expected` entries: none missing, none unknown."""
    given, expected = list(given), list(expected)
    missing = [name for name in expected if name not in given]
    if missing:
        raise CheckpointError(f"{what} {missing[0]!r} is missing")
    unknown = [name for name in given if name not in expected]
    if unknown:
        raise CheckpointError(f"unknown {what} {unknown[0]!r}; expected {', '.join(expected) or 'none'}")
