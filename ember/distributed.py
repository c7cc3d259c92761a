"""Data-parallel training across processes, on MPI (through mpi4py).

Every process (rank) holds the whole model and takes its own share of each
batch. A distributed training step runs the compiled step in two halves:

    backward   loss and gradients of this rank's rows, into one buffer
    mean       the buffers' mean over the ranks (`GradientMean`)
    apply      clipping, the schedule and the optimizer's update, natively

so every rank applies the same averaged gradients and the parameters stay
equal everywhere, as PyTorch's DistributedDataParallel does. With one rank
the step is the ordinary `train_step`. A model's `nn.SyncBatchNorm` layers
sum their statistics over the ranks inside the backward half (`World.allreduce_sum`,
called from native code).

The mean takes one MPI all-reduce when the job spans hosts. When every rank
runs on one host it takes none: the buffers live in memory the ranks share
(an MPI-3 shared window), each rank sums its own slice of all of them and
the apply halves all read the one result, so no gradient is copied.

`Program.shard_optimizer_state()` (ZeRO stage 1) keeps on each rank only
the optimizer state of the parameters it owns (`partition`,
`OptimizerShard`); the owners hand the updated parameters to the others
after each apply (`GradientMean.share`).

    mpiexec -n 2 python train.py      # in train.py:

    import ember.distributed as dist
    world = dist.init()
    loss = prog.train_step(x_shard, y_shard, distributed=True)

mpi4py is an optional dependency: `pip install "ember[mpi]"` (with the
`mpich` wheel, which ships `mpiexec`)."""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ir import ConfigError
from .runtime.arena import Arena
from .runtime.training import Events, Logs


@dataclass(frozen=True)
class World:
    """The processes of one MPI job: this one's rank among `size`, and its
    rank among those on the same host (`local_rank`). `one_host`: every
    rank runs on this host, so gradients can be averaged in shared memory."""

    comm: Any
    rank: int
    size: int
    local_rank: int
    one_host: bool = False
    _windows: list[Any] = field(default_factory=list, repr=False, compare=False)

    def gradient_mean(self, length: int, dtype: np.dtype) -> GradientMean:
        """Buffers for `length` numbers a rank writes and their mean over
        the ranks (every rank calls this at the same point of the program,
        as with any collective)."""
        if self.one_host:
            return SharedMemoryMean(self, length, dtype)
        return AllreduceMean(self, length, dtype)

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


class GradientMean(ABC):
    """This rank's numbers (`local`, written by the backward half) and the
    mean over the ranks (`mean`, read by the apply half), each a fixed
    buffer; `reduce()` fills `mean` from every rank's `local`."""

    world: World
    local: np.ndarray
    mean: np.ndarray

    @abstractmethod
    def reduce(self) -> None:
        """`mean` from every rank's `local` (every rank calls it, as any collective)."""

    @abstractmethod
    def share(self, pieces: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
        """For each (array, slot, owner): every rank's `array` becomes the
        owner's, passed through `slot`, a view of `mean` (which every rank's
        apply half has read by now), or broadcast."""


class AllreduceMean(GradientMean):
    """One buffer, averaged in place by an MPI all-reduce."""

    def __init__(self, world: World, length: int, dtype: np.dtype) -> None:
        self.world = world
        self.local = self.mean = np.zeros(length, dtype)

    def reduce(self) -> None:
        self.world.allreduce_mean(self.local)

    def share(self, pieces: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
        for array, _, owner in pieces:
            self.world.broadcast(array, root=owner)


class SharedMemoryMean(GradientMean):
    """Every rank's buffer and the mean, rows of one window of shared
    memory: rank r sums the r-th slice of every rank's row, in rank order,
    into the mean row, so each number is added once on the host and every
    rank reads the same bits. Barriers on both sides keep a rank from
    reading a row before it is written or writing one still being read."""

    ALIGN = 16
    """Rows and slices start on 64-byte boundaries, so ranks never write to one cache line."""

    def __init__(self, world: World, length: int, dtype: np.dtype) -> None:
        from mpi4py import MPI

        self.world = world
        dtype = np.dtype(dtype)
        stride = -(-length // self.ALIGN) * self.ALIGN
        rows = world.size + 1
        size = rows * stride * dtype.itemsize if world.rank == 0 else 0
        window = MPI.Win.Allocate_shared(size, dtype.itemsize, comm=world.comm)
        window.Lock_all(MPI.MODE_NOCHECK)
        world._windows.append(window)  # freed with the job: freeing is collective, a collection is not
        memory, _ = window.Shared_query(0)
        table = np.ndarray((rows, stride), dtype, buffer=memory)
        self.window = window
        self.rows = table[: world.size, :length]
        self.local, self.mean = table[world.rank, :length], table[world.size, :length]
        bounds = [min(length, (stride * r // world.size) // self.ALIGN * self.ALIGN) for r in range(world.size)]
        self.mine = slice(bounds[world.rank], bounds[world.rank + 1] if world.rank + 1 < world.size else length)

    def reduce(self) -> None:
        self._barrier()  # every rank's row is written
        rows, mean = self.rows[:, self.mine], self.mean[self.mine]
        np.add(rows[0], rows[1], out=mean)
        for row in rows[2:]:
            np.add(mean, row, out=mean)
        np.divide(mean, self.world.size, out=mean)
        self._barrier()  # the whole mean is written

    def share(self, pieces: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
        self._barrier()  # every rank has read the mean
        for array, slot, owner in pieces:
            if owner == self.world.rank:
                np.copyto(slot, array)
        self._barrier()  # every owner's array is in its slot
        for array, slot, owner in pieces:
            if owner != self.world.rank:
                np.copyto(array, slot)

    def _barrier(self) -> None:
        self.window.Sync()
        self.world.comm.Barrier()
        self.window.Sync()


@dataclass
class OptimizerShard:
    """A process's share of a program's optimizer state (ZeRO stage 1, see
    `Program.shard_optimizer_state`): the process that updates each
    parameter (`owners`) and keeps each piece of state (`state_owners`; the
    groups' scalars, such as `step`, every process keeps alike), the state
    of this process's parameters, and the apply half that updates them."""

    owners: dict[str, int]
    state_owners: dict[str, int]
    state: Arena
    executable: Any

    def share_parameters(self, exchange: GradientMean, params: Arena, slots: Mapping[str, np.ndarray]) -> None:
        """Every parameter as its owner updated it, passed through its slot
        of the gradients' mean (`slots`, by parameter: its gradient's)."""
        exchange.share([(params[name], slots[name], owner) for name, owner in self.owners.items()])

    def owner_of_state(self, name: str) -> int:
        """The process that keeps optimizer state `name` (rank 0 for the groups' scalars)."""
        return self.state_owners.get(name, 0)


def partition(sizes: Mapping[str, int], ranks: int) -> dict[str, int]:
    """Each parameter (by its number of elements) to a rank: the largest
    first, each to the rank holding the fewest elements so far (the lowest
    rank on a tie), as torch's ZeroRedundancyOptimizer partitions."""
    loads = [0] * ranks
    owners = {}
    for name in sorted(sizes, key=lambda n: -sizes[n]):  # a stable sort: ties keep the given order
        rank = loads.index(min(loads))
        owners[name] = rank
        loads[rank] += sizes[name]
    return {name: owners[name] for name in sizes}


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
        size = comm.Get_size()
        _WORLD = World(comm, comm.Get_rank(), size, local.Get_rank(), one_host=size > 1 and local.Get_size() == size)
        local.Free()
        if _WORLD.size > 1:
            _abort_on_uncaught_exceptions(comm)
    return _WORLD


_ABORT_GRACE_SECONDS = 0.5


def _abort_on_uncaught_exceptions(comm: Any) -> None:
    """An exception that ends this process ends the job: the traceback is
    printed, then MPI_Abort stops every rank (as `python -m mpi4py` does).
    Otherwise the other ranks would wait in their next all-reduce forever."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        previous(kind, value, traceback)
        sys.stderr.flush()
        # mpiexec forwards a rank's stderr through a pipe it stops reading
        # once the abort reaches it: give it a moment to pass the traceback on.
        time.sleep(_ABORT_GRACE_SECONDS)
        comm.Abort(1)

    sys.excepthook = hook


def world() -> World:
    """The job `init()` joined (a ConfigError before it)."""
    if _WORLD is None:
        raise ConfigError("call ember.distributed.init() before a distributed step")
    return _WORLD
