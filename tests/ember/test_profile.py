"""`Program.profile` and `ember profile`: per-kernel timers in native code,
each kernel's operations and bytes, and a profile that leaves the program
as it found it. Times are only checked for consistency, never for speed."""

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.cli import main
from ember.compiler.cost import describe, kernel_bytes, kernel_flops
from ember.ir import DType
from ember.runtime import machine
from ember.trace import INPUT

ROWS = 24


@pytest.fixture(scope="module")
def program() -> ember.Program:
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 5))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.01), seed=3)


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(ROWS, 12)).astype(np.float32), rng.integers(0, 5, ROWS)


def test_a_training_profile_times_every_kernel_in_order(program):
    profile = program.profile(*batch(), steps=3)
    kernels = program._native.programs["train"].kernels
    assert [k.name for k in profile.kernels] == [k.name for k in kernels]
    assert profile.entry == "train_step"
    assert profile.sizes == {"B": ROWS}
    assert profile.steps == 3
    assert all(k.seconds > 0 for k in profile.kernels)
    # the kernels are timed inside the entry, the entry inside the Python call
    assert profile.kernel_seconds <= profile.native_seconds * 1.0001
    assert profile.native_seconds < profile.step_seconds
    assert 0 < profile.share("matmul") <= 1


def test_a_sync_batch_norm_profile_shows_its_collectives():
    model = nn.Sequential(nn.Linear(12, 16, bias=False), nn.SyncBatchNorm(16), nn.ReLU(), nn.Linear(16, 5))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1))
    profile = prog.profile(*batch(), steps=2)
    collectives = [k for k in profile.kernels if k.bound == "collective"]
    # forward: the row count, the sum and the squared deviations; backward: the two sums' gradients
    assert len(collectives) == 5
    assert all("allreduce_sum" in k.computes for k in collectives)
    assert "collective" in profile.table()


def test_profiling_does_not_train(program):
    x, y = batch()
    program.train_step(x, y)
    before = program.parameters, program.optimizer_state, program.rng_step
    program.profile(x, y, steps=2)
    after = program.parameters, program.optimizer_state, program.rng_step
    for was, now in zip(before[:2], after[:2], strict=True):
        for name, value in was.items():
            np.testing.assert_array_equal(now[name], value, err_msg=name)
    assert after[2] == before[2]
    np.testing.assert_array_equal(program.predict(x), program.predict(x))


def test_the_profiled_entry_computes_what_the_entry_does(program):
    x, _ = batch()
    expected = program.predict(x)
    executable = program._exec
    ticks = np.zeros(len(program._native.programs["predict"].kernels) + 1, np.int64)
    (got,) = executable.run_profiled("predict", {INPUT: x}, ticks).values()
    np.testing.assert_array_equal(got, expected)
    assert (ticks > 0).all()
    with pytest.raises(ember.ShapeError, match="ticks"):
        executable.run_profiled("predict", {INPUT: x}, ticks[:-1])


def test_a_predict_profile_counts_each_matmul_as_2mnk():
    model = nn.Sequential(nn.Linear(40, 24, bias=False))
    prog = ember.compile(model)
    profile = prog.profile(np.ones((7, 40), np.float32), steps=2)
    (kernel,) = profile.kernels
    assert kernel.flops == 2 * 7 * 24 * 40
    assert kernel.bytes == 4 * (7 * 40 + 24 * 40 + 7 * 24)  # x, the weight and the output, once each
    assert kernel.computes == "matmul 7x24x40"
    assert kernel.bound in ("compute", "memory (L1)", "memory (L2)", "memory (L3)", "memory (DRAM)")
    assert kernel.roof_fraction > 0


def test_elementwise_kernels_count_one_operation_per_element(program):
    kernels = program._native.programs["train"].kernels
    sizes = {"B": 10}
    for kernel in kernels:
        flops = kernel_flops(kernel, sizes)
        if kernel.matmul is None and kernel.kind == "elementwise":
            members = [n for n in kernel.nodes if n.op.view is None]
            domain = int(np.prod([d if isinstance(d, int) else 10 for d in kernel.domain]))
            assert flops == len(members) * domain, describe(kernel, sizes)
        assert kernel_bytes(program._native.programs["train"], kernel, sizes) > 0


def test_the_table_shows_each_kernel_and_the_totals(program):
    text = program.profile(*batch(), steps=2).table(sort_by="order")
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["kernel", "computes", "time"]
    assert [line.split()[0] for line in lines[2:-3]] == [f"k{i}" for i in range(len(lines) - 5)]
    assert "train_step(B=24), " in lines[-2]
    assert "GFLOP/s FMA peak" in lines[-1]


def test_bad_profile_requests_are_config_errors(program):
    with pytest.raises(ember.ConfigError, match="steps must be a positive integer"):
        program.profile(*batch(), steps=0)
    reference = ember.compile(nn.Sequential(nn.Linear(2, 1)), backend="reference")
    with pytest.raises(ember.ConfigError, match="reference backend"):
        reference.profile(np.ones((1, 2)))


def test_the_machine_roofs_are_measured():
    assert machine.fma_peak() > 1e9
    assert machine.fma_peak(DType.float64) < machine.fma_peak()
    assert machine.counter_rate() > 1e8
    levels = machine.copy_bandwidths()
    assert [b.level for b in levels] == ["L1", "L2", "L3", "DRAM"]
    assert all(b.bytes_per_second > 1e8 for b in levels)
    assert [b.fits for b in levels] == sorted(b.fits for b in levels)


def test_ember_profile_prints_the_table(tmp_path, capsys):
    model = tmp_path / "model.py"
    model.write_text(
        "from ember import nn, optim\n"
        "model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))\n"
        "loss = nn.CrossEntropyLoss()\noptimizer = optim.SGD(lr=0.1)\n"
    )
    assert main(["profile", str(model), "--steps", "2", "--batch-size", "16", "--sort", "order"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].startswith("k0 ")
    assert "train_step(B=16)" in out
    assert main(["profile", str(model), "--steps", "2", "--predict"]) == 0
    assert "predict(B=32)" in capsys.readouterr().out
