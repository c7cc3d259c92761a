"""Data-parallel training across processes, on MPI (through mpi4py).

Every process (rank) holds the whole model and takes its own share of each
batch. A distributed training step runs the compiled step in two halves:

    backward   loss and gradients of this rank's rows, into one buffer
    all-reduce the buffer summed over the ranks (one MPI call), then / size
    apply      clipping, the schedule and the optimizer's update, natively

so every rank applies the same averaged gradients and the parameters stay
equal everywhere, as PyTorch's DistributedDataParallel does. With one rank
the step is the ordinary `train_step`. A model's `nn.SyncBatchNorm` layers
sum their statistics over the ranks inside the backward half (`World.allreduce_sum`,
called from native code).

    mpiexec -n 2 python train.py      # in train.py:

    import ember.distributed as dist
    world = dist.init()
    loss = prog.train_step(x_shard, y_shard, distributed=True)

mpi4py is an optional dependency: `pip install "ember[mpi]"` (with the
`mpich` wheel, which ships `mpiexec`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ir import ConfigError
from .runtime.training import Events, Logs


@dataclass(frozen=True)
class World:
    """The processes of one MPI job: this one's rank among `size`, and its
    rank among those on the same host (`local_rank`)."""

    comm: Any
    rank: int
    size: int
    local_rank: int

    def allreduce_mean(self, buffer: np.ndarray) -> None:
        """`buffer` (contiguous) replaced by its mean over the ranks, in place."""
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        buffer /= self.size

    def allreduce_sum(self, buffer: np.ndarray) -> None:
        """`buffer` (contiguous) replaced by its sum over the ranks, in place
        (what SyncBatchNorm's statistics take)."""
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)

    def broadcast(self, buffer: np.ndarray, root: int = 0) -> None:
        """`buffer` (contiguous) replaced by rank `root`'s, in place."""
        self.comm.Bcast(buffer, root=root)

    def allgather(self, value: Any) -> list[Any]:
        """Every rank's `value` (any picklable object), in rank order."""
        return self.comm.allgather(value)

    def any(self, flag: bool) -> bool:
        """Whether `flag` holds on any rank."""
        from mpi4py import MPI

        return bool(self.comm.allreduce(bool(flag), op=MPI.LOR))


class AgreedEvents(Events):
    """Another `Events` whose stop every rank agrees on: one rank's callback
    stopping stops them all (else the others would wait for it in their
    next all-reduce forever)."""

    def __init__(self, events: Events, world: World) -> None:
        self.events = events
        self.world = world

    def train_begin(self) -> None:
        self.events.train_begin()

    def epoch_begin(self, epoch: int) -> None:
        self.events.epoch_begin(epoch)

    def batch_begin(self, batch: int) -> None:
        self.events.batch_begin(batch)

    def batch_end(self, batch: int, logs: Logs) -> None:
        self.events.batch_end(batch, logs)

    def epoch_end(self, epoch: int, logs: Logs) -> None:
        self.events.epoch_end(epoch, logs)

    def train_end(self, logs: Logs) -> None:
        self.events.train_end(logs)

    def stop(self) -> bool:
        return self.world.any(self.events.stop())


_WORLD: World | None = None


def init() -> World:
    """The MPI job this process runs in (MPI.COMM_WORLD); a process started
    without mpiexec is a job of one."""
    global _WORLD
    if _WORLD is None:
        try:
            from mpi4py import MPI
        except ImportError:
            raise ConfigError(
                'distributed training needs mpi4py: pip install "ember[mpi]" (mpi4py and the mpich wheel)'
            ) from None
        comm = MPI.COMM_WORLD
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        _WORLD = World(comm, comm.Get_rank(), comm.Get_size(), local.Get_rank())
        local.Free()
        if _WORLD.size > 1:
            _abort_on_uncaught_exceptions(comm)
    return _WORLD


def _abort_on_uncaught_exceptions(comm: Any) -> None:
    """An exception that ends this process ends the job: the traceback is
    printed, then MPI_Abort stops every rank (as `python -m mpi4py` does).
    Otherwise the other ranks would wait in their next all-reduce forever."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        previous(kind, value, traceback)
        sys.stderr.flush()
        comm.Abort(1)

    sys.excepthook = hook


def world() -> World:
    """The job `init()` joined (a ConfigError before it)."""
    if _WORLD is None:
        raise ConfigError("call ember.distributed.init() before a distributed step")
    return _WORLD
