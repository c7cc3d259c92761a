"""Data-parallel training (ember/distributed.py): the split step equals the
fused one, N ranks equal one process taking N times the rows (run under
mpiexec), and a failing rank ends the whole job."""

import importlib.util
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import ember
import ember.distributed as dist
from ember import nn, optim
from ember.ir import ConfigError

HERE = Path(__file__).parent
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason='needs MPI: pip install -e ".[mpi]" (mpi4py and the mpich wheel, which ships mpiexec)',
)


class Silent(dist.World):
    """A job of two ranks whose all-reduce finds every rank with the same gradients."""

    def allreduce_mean(self, buffer: np.ndarray) -> None:
        pass


def classifier(backend: str) -> ember.Program:
    model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    return ember.compile(
        model, nn.CrossEntropyLoss(), optim.Adam(lr=0.01), dtype="float64", backend=backend, clip_grad_norm=1.0
    )


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_the_split_step_is_the_training_step(monkeypatch, backend):
    """backward, a (no-op) mean over ranks, then apply: the same bits as
    train_step, buffers, dropout's random numbers and clipping included."""
    fused, split = classifier(backend), classifier(backend)
    monkeypatch.setattr(dist, "_WORLD", Silent(None, 0, 2, 0))
    rng = np.random.default_rng(0)
    for _ in range(4):
        x, y = rng.standard_normal((12, 5)), rng.integers(0, 3, 12)
        assert split.train_step(x, y, distributed=True) == fused.train_step(x, y)
    for name, value in (fused.parameters | fused.buffers).items():
        np.testing.assert_array_equal((split.parameters | split.buffers)[name], value)
    assert split.rng_step == fused.rng_step == 4


class Twins(dist.World):
    """A job of two ranks that hold the same rows: every sum over the ranks is twice this rank's."""

    def allreduce_mean(self, buffer: np.ndarray) -> None:
        pass

    def allreduce_sum(self, buffer: np.ndarray) -> None:
        buffer *= 2


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_sync_batch_norm_normalizes_by_every_ranks_rows(monkeypatch, backend):
    """Two ranks with the same rows train as one process with the rows
    twice: SyncBatchNorm's statistics, their gradients and its running
    statistics are the whole job's (a count twice this rank's, among them)."""

    def synced() -> ember.Program:
        model = nn.Sequential(nn.Linear(5, 16, bias=False), nn.SyncBatchNorm(16), nn.ReLU(), nn.Linear(16, 3))
        return ember.compile(model, nn.CrossEntropyLoss(), optim.SGD(lr=0.1), dtype="float64", backend=backend)

    shared, alone = synced(), synced()
    monkeypatch.setattr(dist, "_WORLD", Twins(None, 0, 2, 0))
    rng = np.random.default_rng(1)
    for _ in range(4):
        x, y = rng.standard_normal((3, 5)), rng.integers(0, 3, 3)
        loss = shared.train_step(x, y, distributed=True)
        assert loss == pytest.approx(alone.train_step(np.concatenate([x, x]), np.concatenate([y, y])), rel=1e-14)
    for name, value in alone.state_dict().items():
        np.testing.assert_allclose(shared.state_dict()[name], value, rtol=1e-13, atol=1e-15, err_msg=name)


def test_a_distributed_step_needs_init(monkeypatch):
    monkeypatch.setattr(dist, "_WORLD", None)
    prog = classifier("native")
    with pytest.raises(ConfigError, match=r"ember.distributed.init\(\)"):
        prog.train_step(np.zeros((4, 5)), np.zeros(4, np.int64), distributed=True)


ALONE = """
    import numpy as np, ember, ember.distributed as dist
    from ember import nn, optim
    world = dist.init()
    assert (world.rank, world.size, world.local_rank) == (0, 1, 0), world
    programs = [ember.compile(nn.Sequential(nn.Linear(5, 3)), nn.CrossEntropyLoss(), optim.Adam(lr=0.1)) for _ in "ab"]
    x, y = np.random.default_rng(0).standard_normal((8, 5)), np.arange(8) % 3
    assert programs[0].train_step(x, y, distributed=True) == programs[1].train_step(x, y)
    print("ok")
"""


@needs_mpi
def test_one_process_is_a_job_of_one():
    """Started without mpiexec (in a child: MPI is not initialized in the test process)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(ALONE)], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr


def mpiexec(ranks: int, script: Path, timeout: float) -> subprocess.CompletedProcess:
    command = [MPIEXEC, "-n", str(ranks), sys.executable, str(script)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@needs_mpi
def test_two_ranks_train_as_one_process_with_both_halves():
    result = mpiexec(2, HERE / "mpi_equivalence.py", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 8
    assert all(line.endswith(", ok") for line in lines), lines


@needs_mpi
def test_ranks_with_sharded_optimizer_state_train_as_one_process():
    result = mpiexec(2, HERE / "mpi_zero.py", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert all(line.endswith(", ok") for line in lines), lines


def test_parameters_go_to_the_least_loaded_rank_largest_first():
    sizes = {"a": 10, "b": 40, "c": 25, "d": 25, "e": 5}
    assert dist.partition(sizes, 2) == {"a": 0, "b": 0, "c": 1, "d": 1, "e": 0}  # 55 and 50 elements
    owners = dist.partition(sizes, 3)
    assert list(owners) == list(sizes)  # in the given order
    loads = [sum(size for name, size in sizes.items() if owners[name] == rank) for rank in range(3)]
    assert loads == [40, 35, 30]
    assert set(dist.partition(sizes, 1).values()) == {0}
    assert dist.partition({"x": 3, "y": 3}, 2) == {"x": 0, "y": 1}  # a tie: the given order, the lower rank


def test_sharding_in_a_job_of_one_does_nothing(monkeypatch):
    monkeypatch.setattr(dist, "_WORLD", dist.World(None, 0, 1, 0))
    prog = classifier("native")
    prog.shard_optimizer_state()
    x, y = np.random.default_rng(2).standard_normal((6, 5)), np.arange(6) % 3
    prog.train_step(x, y)
    assert prog.optimizer_state.keys() >= {"step"}
    prog.gather_optimizer_state()


@needs_mpi
def test_three_ranks_average_in_shared_memory_in_rank_order():
    result = mpiexec(3, HERE / "mpi_mean.py", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["ok"]


@needs_mpi
def test_a_distributed_fit_trains_as_one_process_with_the_whole_batch(tmp_path):
    result = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, str(HERE / "mpi_fit.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "ok", result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["rank0.npz"]  # checkpoints from rank 0 only


FAILING = """
    import os, signal, numpy as np, ember, ember.distributed as dist
    from ember import nn, optim
    world = dist.init()
    prog = ember.compile(nn.Sequential(nn.Linear(5, 3)), nn.CrossEntropyLoss(), optim.SGD(lr=0.1))
    x, y = np.zeros((8, 5), np.float32), np.zeros(8, np.int64)
    for step in range(10_000):
        if step == 3 and world.rank == 1:
            {failure}
        prog.train_step(x, y, distributed=True)
"""


@needs_mpi
@pytest.mark.parametrize(
    "failure", ["raise RuntimeError('rank 1 failed')", "os.kill(os.getpid(), signal.SIGKILL)"], ids=["raises", "killed"]
)
def test_a_failing_rank_ends_the_job(tmp_path, failure):
    script = tmp_path / "failing.py"
    script.write_text(textwrap.dedent(FAILING).replace("{failure}", failure))
    start = time.monotonic()
    result = mpiexec(2, script, timeout=60)
    assert result.returncode != 0
    assert time.monotonic() - start < 30
    if failure.startswith("raise"):
        assert "RuntimeError: rank 1 failed" in result.stderr
