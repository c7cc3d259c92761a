"""The native backend, program by program: training steps, gradients and
predictions against the reference interpreter and finite differences, no
recompiling for new batch sizes, no per-step allocation, and fused,
vectorized machine code.

Native compiles cost about 0.3-1 s each, so models are small and programs
that a test does not change are shared (see `pair_program`)."""

import gc
import itertools
import re
import tracemalloc

import numpy as np
import pytest
from model_tables import ACTIVATIONS, LOSSES
from native_helpers import central_differences

import ember
import ember.compiler.backend as backend
import ember.compiler.codegen.module as codegen_module
import ember.runtime.jit as jit
from ember import nn, optim
from ember.compiler.codegen.target import host_target

FEATURES, HIDDEN, HIDDEN2, OUTPUTS, ROWS = 5, 17, 6, 3, 11  # 17: full vectors of f32 or f64 and a tail
STEPS = 3
TOLERANCE = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}

OPTIMIZERS = {
    "sgd": lambda: optim.SGD(lr=0.1),
    "sgd-momentum": lambda: optim.SGD(lr=0.1, momentum=0.9),
    "sgd-dampening": lambda: optim.SGD(lr=0.1, momentum=0.9, dampening=0.3),
    "sgd-nesterov": lambda: optim.SGD(lr=0.1, momentum=0.8, nesterov=True),
    "sgd-weight-decay": lambda: optim.SGD(lr=0.1, momentum=0.5, weight_decay=0.05),
    "adam": lambda: optim.Adam(lr=0.01),
    "adam-weight-decay": lambda: optim.Adam(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1),
    "adam-amsgrad": lambda: optim.Adam(lr=0.01, betas=(0.9, 0.6), amsgrad=True),
    "adamw": lambda: optim.AdamW(lr=0.02, weight_decay=0.3),
}
DTYPES = ["float32", "float64"]
ACTIVATION_PAIRS = [("relu", "softmax"), ("sigmoid", "gelu"), ("tanh", "leaky_relu")]
"""Each model of the activation x loss tests has two hidden activations, so
three models per loss cover every activation with every loss."""


def make_batch(loss: nn.Loss, dtype: str, rows: int = ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A batch `(x, y)` of `dtype` whose targets suit `loss`: class labels for
    cross entropy, probabilities for BCE, real values for MSE."""
    rng = np.random.default_rng(seed)
    x = 2 * rng.normal(size=(rows, FEATURES))
    if isinstance(loss, nn.CrossEntropyLoss):
        y = rng.integers(0, OUTPUTS, size=rows)
    elif isinstance(loss, nn.BCEWithLogitsLoss):
        y = rng.uniform(size=(rows, OUTPUTS))
    else:
        y = rng.normal(size=(rows, OUTPUTS))
    return x.astype(dtype), y if y.dtype.kind == "i" else y.astype(dtype)


def mlp(activation: str) -> nn.Sequential:
    """FEATURES -> HIDDEN -> OUTPUTS with one hidden activation."""
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), ACTIVATIONS[activation](), nn.Linear(HIDDEN, OUTPUTS))


def mlp2(activations: tuple[str, str]) -> nn.Sequential:
    """FEATURES -> HIDDEN -> HIDDEN2 -> OUTPUTS, the two hidden activations in order."""
    first, second = (ACTIVATIONS[a]() for a in activations)
    layers = [nn.Linear(FEATURES, HIDDEN), first, nn.Linear(HIDDEN, HIDDEN2), second, nn.Linear(HIDDEN2, OUTPUTS)]
    return nn.Sequential(*layers)


def twins(model_factory, loss_factory, optimizer_factory, dtype: str) -> tuple[ember.Program, ember.Program]:
    """The same program compiled for the native and the reference backend."""
    return tuple(
        ember.compile(model_factory(), loss=loss_factory(), optimizer=optimizer_factory(), dtype=dtype, backend=b)
        for b in ("native", "reference")
    )


def reference_twin(prog: ember.Program, path) -> ember.Program:
    """A reference-backend copy of `prog` as it is now (params, optimizer state, lr)."""
    prog.save(path)
    return ember.load(path, backend="reference")


def assert_same_training_state(native: ember.Program, reference: ember.Program, dtype: str) -> None:
    """Every parameter and every optimizer state buffer agree within `dtype`'s tolerance."""
    for what in ("parameters", "optimizer_state"):
        got, expected = getattr(native, what), getattr(reference, what)
        assert list(got) == list(expected), what
        for name in expected:
            assert got[name].dtype == np.dtype(dtype), name
            np.testing.assert_allclose(got[name], expected[name], **TOLERANCE[dtype], err_msg=f"{what} {name}")


def train_both(native: ember.Program, reference: ember.Program, batches, dtype: str) -> None:
    """A training step on each batch in both programs: same losses, then same state."""
    before = native.parameters
    for x, y in batches:
        np.testing.assert_allclose(native.train_step(x, y), reference.train_step(x, y), **TOLERANCE[dtype])
    assert_same_training_state(native, reference, dtype)
    moved = [name for name, value in native.parameters.items() if not np.array_equal(value, before[name])]
    assert moved == list(before), "every parameter must change, or the comparison shows nothing"


# -- 1. a native training step is a reference training step -------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_training_steps_match_the_reference_for_every_optimizer(optimizer, dtype):
    loss = nn.CrossEntropyLoss
    native, reference = twins(lambda: mlp("tanh"), loss, OPTIMIZERS[optimizer], dtype)
    assert native.backend == "native"
    assert reference.backend == "reference"
    batches = [make_batch(loss(), dtype, seed=s) for s in range(STEPS)]
    train_both(native, reference, batches, dtype)
    assert native.optimizer_state["step"] == STEPS


@pytest.fixture(scope="module")
def pair_program():
    """`pair_program(activations, loss, dtype)`: a native program of `mlp2(activations)`
    trained with Adam, compiled once and shared by the tests of this module.
    Tests may train it: `reference_twin` compares from its current state."""
    programs: dict[tuple[tuple[str, str], str, str], ember.Program] = {}

    def get(activations: tuple[str, str], loss: str, dtype: str) -> ember.Program:
        key = (activations, loss, dtype)
        if key not in programs:
            model, make_loss = mlp2(activations), LOSSES[loss]
            programs[key] = ember.compile(model, loss=make_loss(), optimizer=optim.Adam(lr=0.01), dtype=dtype)
        return programs[key]

    return get


PAIRS = [pytest.param(pair, id="+".join(pair)) for pair in ACTIVATION_PAIRS]


def training_case(activations: tuple[str, str], loss: str, dtype: str):
    return pytest.param(activations, loss, dtype, id=f"{'+'.join(activations)}-{loss}-{dtype}")


# float64: every activation with every loss (the programs the gradient checks use);
# float32: every loss once, the activation pairs in turn, so each activation meets several losses.
TRAINING_CASES = [training_case(pair, loss, "float64") for pair in ACTIVATION_PAIRS for loss in LOSSES] + [
    training_case(ACTIVATION_PAIRS[i % len(ACTIVATION_PAIRS)], loss, "float32") for i, loss in enumerate(LOSSES)
]


@pytest.mark.parametrize(("activations", "loss", "dtype"), TRAINING_CASES)
def test_training_steps_match_the_reference_for_every_activation_and_loss(
    pair_program, tmp_path, activations, loss, dtype
):
    native = pair_program(activations, loss, dtype)
    reference = reference_twin(native, tmp_path / "twin.npz")
    batches = [make_batch(LOSSES[loss](), dtype, seed=s) for s in range(STEPS)]
    train_both(native, reference, batches, dtype)


# -- 2. float64 native gradients against finite differences -------------------
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activations", PAIRS)
def test_native_float64_gradients_match_finite_differences(pair_program, activations, loss):
    native = pair_program(activations, loss, "float64")
    x, y = make_batch(LOSSES[loss](), "float64", seed=7)
    params, state = native.parameters, native.optimizer_state
    analytic = native.gradients(x, y)
    # The loss is evaluated by the reference interpreter: an oracle independent of native code.
    oracle = ember.compile(
        mlp2(activations), loss=LOSSES[loss](), optimizer=optim.SGD(), dtype="float64", backend="reference"
    )

    def loss_of(values):
        oracle.set_parameters(values)
        return oracle.evaluate(x, y)["loss"]

    numeric = central_differences(loss_of, params)
    assert list(analytic) == list(numeric)
    for name, value in numeric.items():
        assert analytic[name].dtype == np.float64
        np.testing.assert_allclose(analytic[name], value, rtol=1e-3, atol=1e-5, err_msg=name)
        assert np.abs(analytic[name]).max() > 1e-6, f"{name} gets no gradient signal"
    for name, value in native.parameters.items():  # gradients() updates nothing
        np.testing.assert_array_equal(value, params[name])
    for name, value in native.optimizer_state.items():
        np.testing.assert_array_equal(value, state[name])


# -- 3. any batch size, one compiled predict ----------------------------------
class CallCounter:
    """Wraps a function and counts its calls."""

    def __init__(self, function) -> None:
        self.function = function
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


def test_predict_on_any_batch_size_matches_the_reference_without_recompiling(monkeypatch):
    loss, adam = nn.CrossEntropyLoss, lambda: optim.Adam(lr=0.01)
    native, reference = twins(lambda: mlp("gelu"), loss, adam, "float32")
    x, y = make_batch(loss(), "float32", rows=32)
    native.train_step(x, y)  # predict sees trained weights, not the initial ones
    reference.train_step(x, y)
    stages = {"emit_module": codegen_module, "optimized": backend}
    counters = {name: CallCounter(getattr(module, name)) for name, module in stages.items()}
    for name, counter in counters.items():
        monkeypatch.setattr(stages[name], name, counter)
    monkeypatch.setattr(jit, "load", loader := CallCounter(jit.load))

    rng = np.random.default_rng(3)
    first = rng.normal(size=(32, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(native.predict(first), reference.predict(first), rtol=1e-5, atol=1e-6)
    assert counters["emit_module"].calls == 1, "predict is compiled on first use"
    optimized = counters["optimized"].calls  # its kernels, and any matmul library function new to it
    assert loader.calls == 1
    compile_seconds = {k: v for k, v in native.pass_seconds.items() if k in ("codegen", "llvm-optimize")}
    assert "codegen" in compile_seconds

    for rows in (1, 7, 10_000):
        x = 3 * rng.normal(size=(rows, FEATURES)).astype(np.float32)
        out = native.predict(x)
        assert out.shape == (rows, OUTPUTS)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, reference.predict(x), rtol=1e-5, atol=1e-6, err_msg=f"{rows} rows")
    assert counters["emit_module"].calls == 1, "a new batch size must not recompile"
    assert counters["optimized"].calls == optimized
    assert loader.calls == 1
    assert {k: v for k, v in native.pass_seconds.items() if k in compile_seconds} == compile_seconds


# -- 4. a training step allocates nothing that grows with the model -----------
def step_allocations(prog: ember.Program, x: np.ndarray, y: np.ndarray, steps: int = 10) -> tuple[int, int]:
    """(largest peak of Python-traced memory above the level before a step,
    growth of traced memory over all steps), in bytes, after warm-up."""
    for _ in range(3):  # warm-up: entries compiled, workspace sized for this batch
        prog.train_step(x, y)
    # Earlier tests' programs caught in reference cycles would otherwise be
    # freed by a collection that may fall inside a measured step, and freeing
    # a program's machine code allocates a few hundred bytes for a moment.
    gc.collect()
    tracemalloc.start()
    try:
        # and refill the free lists and caches under tracing: Python keeps freed
        # floats and dicts on free lists (up to ~100 each), which tracing counts
        # as held, and they fill over the first hundred or so steps
        for _ in range(120):
            prog.train_step(x, y)
        start, _ = tracemalloc.get_traced_memory()
        peak_above = 0
        for _ in range(steps):
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            prog.train_step(x, y)
            peak_above = max(peak_above, tracemalloc.get_traced_memory()[1] - before)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak_above, end - start


ALLOCATION_BOUND = 4096  # bytes: a few small Python objects and the 0-d loss array


def test_a_training_step_makes_no_allocation_proportional_to_the_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 64)).astype(np.float32)  # exactly the program's dtype: nothing to convert
    y = rng.integers(0, 10, size=32)
    results = {}
    for sizes in ((64, 128, 10), (64, 512, 2048, 2048, 10)):
        layers = []
        for n_in, n_out in itertools.pairwise(sizes):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
        prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-4))
        model_bytes = sum(p.nbytes for p in prog.parameters.values())
        # a leak grows memory on every run; a cache or free list filling once
        # (measured: 2.3 KB in about one run of ten) does not
        runs = [step_allocations(prog, x, y) for _ in range(3)]
        results[model_bytes] = (max(peak for peak, _ in runs), min(growth for _, growth in runs))
    (small, (small_peak, small_growth)), (large, (large_peak, large_growth)) = sorted(results.items())
    assert large > 100 * small  # the comparison is between really different sizes
    assert small_peak <= ALLOCATION_BOUND, small_peak
    assert large_peak <= ALLOCATION_BOUND, large_peak
    assert large_peak <= small_peak + 512, "per-step allocation must not grow with the model"
    assert small_growth <= 2048  # over 10 steps: nothing kept per step (NumPy's small-buffer cache may fill)
    assert large_growth <= 2048


def test_the_allocation_probe_sees_an_allocation_proportional_to_the_model():
    """The probe above is able to fail: copying the parameters each step shows up."""
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-4))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 64)).astype(np.float32), rng.integers(0, 10, size=32)

    class Leaky:
        def train_step(self, x, y):
            params = prog.parameters  # copies every parameter
            loss = prog.train_step(x, y)
            del params
            return loss

    peak, _ = step_allocations(Leaky(), x, y)
    assert peak > sum(p.nbytes for p in prog.parameters.values())


# -- 6. fusion and vector code -------------------------------------------------
VECTOR_REGISTER = "zmm" if host_target().vector_bits >= 512 else "ymm"
OP_LINE = re.compile(r"^\s+%\S+: \S+ = \w+", re.M)
KERNEL_HEADER = re.compile(r"^k\d+: (matmul|rows|reduce|elementwise|copy) over \[", re.M)
LIBM = re.compile(r"^_*(exp|exp2|expm1|log|log2|log10|log1p|tanh|sinh|cosh|pow|erf|erfc|sqrt|cbrt)[fl]?(_finite)?$")


def vector_arithmetic(asm: str) -> list[str]:
    """The floating-point vector arithmetic instructions on host-width registers."""
    pattern = rf"^\s+(v(?:fn?m(?:add|sub)\d{{3}}|add|sub|mul|div|max|min|sqrt)p[sd])\s+.*%{VECTOR_REGISTER}\d"
    return re.findall(pattern, asm, re.M)


def called_symbols(asm: str) -> set[str]:
    """Every named symbol the code calls: directly (`call expf@PLT`) or through a
    register loaded with its address (`movabsq $expf, %rax` then `callq *%rax`)."""
    direct = re.findall(r"^\s+(?:call|jmp)q?\s+([A-Za-z_][\w.$]*)", asm, re.M)
    loaded = re.findall(r"^\s+movabsq\s+\$([A-Za-z_][\w.$]*)", asm, re.M)
    return {name.split("@")[0] for name in direct + loaded}


def function_asm(asm: str, name: str) -> str:
    """The body of function `name` in an assembly listing."""
    match = re.search(rf"^{re.escape(name)}:\n(.*?)^\.Lfunc_end\d+:", asm, re.M | re.S)
    assert match, f"no function {name} in the assembly"
    return match.group(1)


def test_the_asm_probes_recognize_what_they_look_for():
    r = VECTOR_REGISTER
    sample = f"f:\n\tvfmadd213ps\t%{r}1, %{r}2, %{r}0\n\tcallq\texpf@PLT\n\tmovabsq\t$tanhf, %rax\n\tcallq\t*%rax\n"
    sample += "\tmovabsq\t$.LCPI0_1, %rcx\n.Lfunc_end0:\n"
    assert vector_arithmetic(sample) == ["vfmadd213ps"]
    assert called_symbols(sample) == {"expf", "tanhf"}
    assert all(LIBM.match(s) for s in called_symbols(sample))
    assert not LIBM.match("memset")
    assert function_asm(sample, "f").startswith("\tvfmadd213ps")


@pytest.fixture(scope="module")
def deep_mlp() -> ember.Program:
    """A 64-128-64-10 ReLU MLP trained with cross entropy and Adam."""
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3))


def test_fusion_leaves_at_most_one_kernel_per_three_ops(deep_mlp):
    ops = len(OP_LINE.findall(deep_mlp.dump("train")))
    kernels = KERNEL_HEADER.findall(deep_mlp.dump("kernels"))
    assert ops > 100  # forward, backward and the Adam update of six params
    assert 0 < len(kernels) <= ops / 3, f"{len(kernels)} kernels for {ops} ops"
    assert kernels.count("matmul") == 8  # 3 forward, 2 input gradients (none for x), 3 weight gradients
    header = re.match(r"fused train_step: (\d+) kernels from \d+ nodes", deep_mlp.dump("fused"))
    assert header
    assert int(header.group(1)) == len(kernels)


def kernel_blocks(kernels_dump: str) -> dict[str, str]:
    """Each kernel's text in a `kernels` dump, by kernel name (k0, k1, ...)."""
    starts = [m.start() for m in KERNEL_HEADER.finditer(kernels_dump)] + [len(kernels_dump)]
    blocks = [kernels_dump[a:b] for a, b in itertools.pairwise(starts)]
    return {block.split(":", 1)[0]: block for block in blocks}


def test_the_training_step_calls_no_scalar_math_library(deep_mlp):
    asm = deep_mlp.dump("asm")
    kernels = kernel_blocks(deep_mlp.dump("kernels"))
    assert not [s for s in called_symbols(asm) if LIBM.match(s)]
    assert not re.search(r"\b(expf?|logf?|tanhf?)(@PLT)?$", asm, re.M)
    for name in kernels:  # every kernel of the dump is a function of its own
        assert function_asm(asm, f"train_step.{name}")


def test_the_adam_update_of_a_bias_is_vector_code(deep_mlp):
    kernels = kernel_blocks(deep_mlp.dump("kernels"))
    [name] = [k for k, text in kernels.items() if "%0.bias.exp_avg[" in text]
    assert kernels[name].startswith(f"{name}: elementwise over [128]")
    body = function_asm(deep_mlp.dump("asm"), f"train_step.{name}")
    arithmetic = vector_arithmetic(body)
    assert {"vsqrtps", "vdivps", "vmulps"} <= set(arithmetic), arithmetic  # sqrt(v), m / denom, beta * m
    # only the bias corrections' powers, once per call: ember's shared scalar math, not libm
    assert set(called_symbols(body)) <= {"ember.math.pow.f32.f32"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_fused_activation_kernel_is_vector_code_without_libm_calls(dtype):
    def model():
        return nn.Sequential(nn.Sigmoid(), nn.Tanh(), nn.GELU())

    prog = ember.compile(model(), input_shape=(64,), dtype=dtype)
    fused = prog.dump("fused")
    assert fused.startswith("fused predict: 1 kernels from 3 nodes\nkernel k0: elementwise over [B,64]")
    body = function_asm(prog.dump("asm"), "predict.k0")
    suffix = "ps" if dtype == "float32" else "pd"
    arithmetic = vector_arithmetic(body)
    fmas = [op for op in arithmetic if op.startswith("vfmadd") and op.endswith(suffix)]
    assert len(fmas) >= 10, arithmetic  # exp and tanh as vector polynomials
    assert not called_symbols(body), "an elementwise kernel calls nothing"
    x = np.random.default_rng(0).normal(0, 4, size=(37, 64)).astype(dtype)
    reference = ember.compile(model(), input_shape=(64,), dtype=dtype, backend="reference")
    np.testing.assert_allclose(prog.predict(x), reference.predict(x), **TOLERANCE[dtype])
