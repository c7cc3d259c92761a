"""`Program`: a compiled model, its graphs at every stage, its parameters
and optimizer state, and the methods to train and run it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import numbers
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import metrics as metric_table
from .callbacks import Callback, CallbackList, ModelCheckpoint, SchedulerStep
from .compiler import Optimizer, PassLog, build_inference, build_training, grad_name
from .compiler.clipping import GradientClipping
from .compiler.native import NativeBuild, build_native
from .compiler.optimizers import PARAMS, initial_state, scalar_name
from .compiler.pipeline import build_sharded_apply, build_split_step
from .compiler.schedules import StepSchedule
from .distributed import AgreedEvents, OptimizerShard, partition
from .ir import BATCH, ConfigError, DType, Graph, InputError, TensorType, print_graph
from .metrics import Metric
from .param_groups import Hyperparameters, ParamGroup
from .profile import Profile, profile_entry
from .runtime.arena import Arena
from .runtime.checkpoint import Checkpoint, checkpoint_bytes, checkpoint_path, save_checkpoint
from .runtime.collectives import reducing_over
from .runtime.host import host
from .runtime.locks import ForkSafeLock
from .runtime.native import NativeExecutable
from .runtime.reference import ReferenceExecutable
from .runtime.training import SCHEDULER_INTERVALS, Events, FitOptions, fit_loop, split_validation
from .runtime.validation import check_array, check_indices, check_labels, check_rows, index_inputs
from .state_dict import IncompatibleKeys, StateLayout, check_state_dict, give_out
from .tensor import RNG_INPUTS, RNG_SEED, RNG_STEP

if TYPE_CHECKING:
    from .distributed import GradientMean, World
    from .runtime.export import ExportSource
from .trace import EVALUATE, LOSS, MODEL, PREDICTION, SAMPLE_WEIGHT, TARGET, names

STAGES = ("graph", "autodiff", "train", "simplified", "fused", "kernels", "llvm", "llvm-opt", "asm")
"""Every stage `Program.dump` knows, in pipeline order."""

NATIVE_STAGES = STAGES[4:]
BACKENDS = ("native", "reference")
DEFAULT_BACKEND = "native"
CLIP_GRAD_SETTING = "clip_grad"
"""The checkpoint setting of gradient clipping (absent: no clipping)."""
LR_SCHEDULE_SETTING = "lr_schedule"
"""The checkpoint setting of a schedule compiled into the step (absent: none)."""
EVAL_CHUNK_ROWS = 8192

Batch = dict[str, np.ndarray]
"""Checked inputs and targets of a run, by graph argument name."""


class Program:
    """A model compiled for training (with a loss and optimizer) or for
    inference only. Build one with `ember.compile` or `ember.load`.

    A Program may be shared between threads: every run and every read or
    write of its parameters and optimizer state holds one lock, so each sees
    a whole number of training steps. It pickles and copies (`copy.deepcopy`)
    through its checkpoint; the copy is independent of the original."""

    def __init__(
        self,
        *,
        predict_graph: Graph,
        params: Mapping[str, np.ndarray],
        dtype: DType,
        batch_size: int,
        seed: int,
        backend: str,
        loss_graph: Graph | None = None,
        evaluate_graph: Graph | None = None,
        buffers: Mapping[str, np.ndarray] | None = None,
        optimizer: Optimizer | None = None,
        loss_info: Mapping[str, Any] | None = None,
        lr: float | None = None,
        param_groups: Sequence[Mapping[str, Any]] | None = None,
        frozen: Sequence[str] = (),
        state_layout: StateLayout | None = None,
        check: bool = False,
        print_after: Sequence[str] = (),
        clipping: GradientClipping | None = None,
        lr_schedule: StepSchedule | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        self._lock = ForkSafeLock()  # guards the parameters, the state and the executable's buffers
        self.dtype = dtype
        self.batch_size = batch_size
        # the random numbers' key: fixed inputs of the graphs that draw them
        self._rng_key = {RNG_SEED: np.zeros((), np.int64), RNG_STEP: np.zeros((), np.int64)}
        self.seed = seed
        self.backend = backend
        self.frozen = tuple(frozen)
        if optimizer is not None:
            names = [p.name for p in predict_graph.params]
            optimizer = optimizer.resolve(names, self.frozen)  # names stay names; Parameters need ember.compile
        self._optimizer = optimizer
        self.clipping = clipping or None
        self.lr_schedule = lr_schedule
        self.loss_info = dict(loss_info or {})
        self.log = PassLog(print_after=frozenset(print_after), check=check)
        self._rng = np.random.default_rng(seed)
        self.stop_training = False
        """Set by a callback to end fit after the current step (as Keras' model.stop_training)."""
        self._sources = {"predict": predict_graph}
        self._index_inputs = index_inputs(predict_graph) | (index_inputs(loss_graph) if loss_graph else {})
        inference = build_inference(predict_graph, self.log)
        self._graphs = {"predict": inference["simplified"]}
        self._stages = inference
        if loss_graph is not None:
            if optimizer is None:
                raise ConfigError("a program with a loss needs an optimizer")
            trained = [name for group in optimizer.param_groups for name in group[PARAMS]]
            training = build_training(
                loss_graph, optimizer, self.log, evaluate_graph, trained, self.clipping, lr_schedule
            )
            self._sources[MODEL] = loss_graph
            if evaluate_graph is not None:
                self._sources[EVALUATE] = evaluate_graph
            self._stages = training.stages
            self._graphs.update(train=training.train, gradients=training.gradients, evaluate=training.evaluate)
        self._param_names = [p.name for p in predict_graph.params]
        self._buffer_names = [b.name for b in predict_graph.buffers]
        self._state_layout = state_layout or StateLayout.default(self._param_names + self._buffer_names)
        # one model arena: the params, then the buffers (native code reads both from it)
        model_shapes = {a.name: a.type.shape for a in [*predict_graph.params, *predict_graph.buffers]}
        self._params = Arena(model_shapes, dtype.numpy)
        for name, value in params.items():
            np.copyto(self._params[name], value, casting="same_kind")
        for name, value in (buffers or {}).items():
            np.copyto(self._params[name], value, casting="unsafe")  # integer buffers (counts) as floats
        train = self._graphs.get("train")
        state_shapes = {s.name: s.type.shape for s in train.state} if train else {}
        self._state = Arena(state_shapes, dtype.numpy)
        for name, value in initial_state(optimizer, state_shapes).items() if optimizer else ():
            self._state[name][...] = value
        self._hyper = Hyperparameters(optimizer, dtype, self._lock) if optimizer and train else None
        self._lr = 0.0
        if lr is not None:
            self.lr = lr
        for group, values in zip(self.param_groups, param_groups or (), strict=False):
            group.update(values)
        self._random = {name for name, g in self._graphs.items() if any(a.name in RNG_INPUTS for a in g.inputs)}
        # the inputs the caller passes (not the random numbers' seed and step)
        self._input_arguments = [a for a in self._graphs["predict"].inputs if a.name not in RNG_INPUTS]
        self._input_name = self._input_arguments[0].name if len(self._input_arguments) == 1 else None
        self._output_names = list(self._graphs["predict"].outputs)
        self._target_arguments = self._targets() if self.is_training else []
        self._weighted = self.is_training and any(a.name == SAMPLE_WEIGHT for a in self._graphs["evaluate"].inputs)
        self._ones = np.ones(0, dtype.numpy)  # the sample weights of unweighted data, of the latest size
        self._native: NativeBuild | None = None
        self._gradient_exchange: GradientMean | None = None
        self._averaged: dict[str, np.ndarray] = {}  # the apply half's inputs: views of the exchange's mean
        self._collective_backward = False  # the backward half holds collective ops (SyncBatchNorm)
        self._shard: OptimizerShard | None = None  # see shard_optimizer_state
        # bound once, read by every call: a step passes only the batch
        fixed = self._fixed_inputs()
        if backend == "native":
            self._native = build_native(
                self._graphs, self._params.byte_offsets, self._state.byte_offsets, host(), self.log
            )
            self._exec = NativeExecutable(self._native, self._params, self._state, self._lock, fixed)
        else:
            self._exec = ReferenceExecutable(self._graphs, self._params, self._state, fixed)
        # a call that repeats the last call's array types skips the checks
        # (NativeExecutable.rerun); for models of one input and at most one
        # target, and not where inputs index tables (their values are checked
        # on every call)
        self._rerun = (
            backend == "native"
            and not self._index_inputs
            and len(self._input_arguments) == 1
            and len(self._target_arguments) <= 1
        )

    # -- what the program is -------------------------------------------
    @property
    def is_training(self) -> bool:
        return "train" in self._graphs

    @property
    def input_types(self) -> list[TensorType]:
        """The type of each input, in forward's order (`x`, or `x0`, `x1`, ...)."""
        return [a.type for a in self._input_arguments]

    @property
    def input_type(self) -> TensorType:
        """The type of the (first) input."""
        return self.input_types[0]

    @property
    def target_types(self) -> list[TensorType]:
        """The type of each target (`y`, or `y0`, `y1`, ... per output)."""
        self._require_training("target_type")
        return [type for _, type, _ in self._target_arguments]

    @property
    def target_type(self) -> TensorType:
        """The type of the (first) target."""
        return self.target_types[0]

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, by name (`0.weight`, `0.bias`, ...)."""
        with self._lock:
            return {name: self._params[name].copy() for name in self._param_names}

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """A copy of every buffer (such as `1.running_mean`), by name, in the
        program's dtype."""
        with self._lock:
            return {name: self._params[name].copy() for name in self._buffer_names}

    @property
    def optimizer_state(self) -> dict[str, np.ndarray]:
        """A copy of the optimizer state: `step` and each param's buffers."""
        with self._lock:
            self._require_whole_state("optimizer_state")
            return self._state.copies()

    @property
    def optimizer_state_nbytes(self) -> int:
        """The bytes of optimizer state this process holds (its share only,
        after `shard_optimizer_state`)."""
        with self._lock:
            return (self._state if self._shard is None else self._shard.state).buffer.nbytes

    @property
    def optimizer(self) -> Optimizer | None:
        """The optimizer compiled into the training step, its groups naming
        their params (read-only: compile again to change optimizer; change
        hyperparameters through `param_groups`)."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, value: Any) -> None:
        raise ConfigError(
            "prog.optimizer cannot be reassigned: the optimizer is compiled into the training step. "
            "Change hyperparameters through prog.param_groups or prog.lr (no recompiling), or "
            "ember.compile the model again with the new optimizer (prog.parameters carries the weights over)"
        )

    @property
    def param_groups(self) -> list[ParamGroup]:
        """The optimizer's param groups, as PyTorch's: dicts of `params` (the
        names) and every hyperparameter. Assigning a numeric one (`lr`,
        `momentum`, `betas`, `weight_decay`, ...) takes effect at the next
        step and never recompiles; flags and params are fixed."""
        return self._hyper.groups if self._hyper else []

    @property
    def lr(self) -> float:
        """The learning rate of the first param group; setting it sets every
        group's (a runtime input: changing it does not recompile)."""
        return self.param_groups[0]["lr"] if self.param_groups else self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        rate = _learning_rate(value, self.dtype)
        for group in self.param_groups:
            group["lr"] = rate
        self._lr = rate

    @property
    def seed(self) -> int:
        """The seed of the random numbers (dropout masks, modulo 2**64) and of
        fit's shuffling RNG at compile time."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        with self._lock:  # not while a step reads it
            self._seed = value
            self._rng_key[RNG_SEED][...] = np.uint64(value % 2**64).astype(np.int64)

    @property
    def rng_step(self) -> int:
        """The step counter that keys random numbers (dropout masks): every
        training-mode run (train_step, gradients, each step of fit) draws with
        it and then advances it, so each step gets a new mask. Checkpoints keep it."""
        return int(self._rng_key[RNG_STEP])

    @property
    def compile_count(self) -> int:
        """How many compiler passes have run for this program (entries
        compiled on first use, such as `gradients`, add theirs then).
        Changing hyperparameters (`param_groups`, `lr`) never runs one."""
        return sum(self.log.runs.values())

    @property
    def pass_seconds(self) -> dict[str, float]:
        """Compile time spent in each pass, in seconds."""
        return dict(self.log.seconds)

    def __repr__(self) -> str:
        count = sum(self._params[name].size for name in self._param_names)
        what = f"train with {self.optimizer!r}" if self.is_training else "inference"
        return f"<ember.Program {what}: {len(self._param_names)} params ({count:,} values), {self.backend} backend>"

    # -- running -------------------------------------------------------
    def train_step(self, x: Any, y: Any, sample_weight: Any = None, *, distributed: bool = False) -> float:
        """One training step on one minibatch (forward, backward, update);
        returns the loss before the update. A model of several inputs takes
        `x` as a tuple, one of several outputs `y` as a tuple. `sample_weight`
        (one finite number >= 0 per row) weighs each row's loss: the loss is
        the mean over the batch of `w_i * loss_i`, as in Keras.

        `distributed=True` (after `ember.distributed.init()`): `x, y` are this
        process's share of the batch; the gradients are averaged over the
        processes before the update, so every process updates the same way,
        and the loss returned is the mean over the processes."""
        self._require_training("train_step")
        if self._rerun and not distributed and sample_weight is None:
            loss = self._step_again(x, y)
            if loss is not None:
                return loss
        batch = self._check_batch(x, y, sample_weight=sample_weight)
        team = self._team() if distributed else None
        return self._train_batch(batch) if team is None else self._distributed_batch(batch, team=team)

    def predict(self, x: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """The model's output for `x` (any number of rows; a tuple of inputs
        for a model of several); a tuple for a model of several outputs."""
        outputs = self._exec.rerun("predict", {self._input_name: x}) if self._rerun else None
        if outputs is None:
            inputs = self._check_inputs(x, minimum_rows=0)
            with self._lock:
                outputs = self._exec.run("predict", inputs)
        names = self._output_names  # the outputs are fresh arrays
        return outputs[names[0]] if len(names) == 1 else tuple(outputs[name] for name in names)

    def gradients(self, x: Any, y: Any, sample_weight: Any = None) -> dict[str, np.ndarray]:
        """d(loss)/d(param) for one minibatch, by param name (frozen params
        have none); nothing is updated. `sample_weight` as in `train_step`."""
        self._require_training("gradients")
        batch = self._check_batch(x, y, sample_weight=sample_weight)
        with self._lock:
            outputs = self._exec.run("gradients", batch)
            self._advance_rng("gradients")
        return {name: outputs[grad_name(name)] for name in self._param_names if grad_name(name) in outputs}

    def evaluate(
        self, x: Any, y: Any, *, metrics: Sequence[Any] | None = None, sample_weight: Any = None
    ) -> dict[str, float]:
        """Loss (and accuracy, for classification losses) over a whole data
        set, in eval mode, and each of `metrics` (see `ember.metrics`:
        "accuracy", "top_k_accuracy", "f1", "mae", "mse", "rmse", "r2", or a
        callable `metric(y_true, y_pred) -> float`) over the whole data set.
        With several outputs: the weighted total `loss`, and `loss0`,
        `accuracy0`, ... per output. `sample_weight` weighs each row's loss
        as in `train_step` (the metrics are unweighted)."""
        self._require_training("evaluate")
        chosen = self._chosen_metrics(metrics)
        return self._evaluate(self._check_batch(x, y, sample_weight=sample_weight), chosen)

    def fit(
        self,
        x: Any,
        y: Any,
        *misplaced: Any,
        epochs: int = 1,
        batch_size: int | None = None,
        validation_data: tuple[Any, Any] | None = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        sample_weight: Any = None,
        callbacks: Iterable[Callback] | None = (),
        lr_scheduler: Any = None,
        scheduler_interval: str = "epoch",
        metrics: Sequence[Any] | None = (),
        progress: bool = True,
        drop_last: bool = False,
        distributed: bool = False,
    ) -> dict[str, list[float]]:
        """Train for `epochs` passes over (x, y) in shuffled minibatches of
        `batch_size` rows (default: the compiled batch size); every argument
        after `y` is keyword-only. Returns the history, a list per key with
        one value per epoch run: `loss` (mean over the epoch's rows), the
        `metrics` on the training data at the epoch's end, `val_loss` and
        the other `val_*` of `evaluate` on the validation data (given as
        `validation_data=(x, y)`, or the last `validation_split` fraction of
        the rows, held out before shuffling, as in Keras; `validation_data`
        wins if both are given), `lr` (of the epoch's first step) and
        `seconds` (training time). Each of `metrics` (as in `evaluate`) is
        computed over the training data in eval mode at the epoch's end, and
        as `val_<name>` over the validation data. `sample_weight` weighs the
        rows of (x, y) as in `train_step`; with `validation_split` the held
        out rows keep their weights.

        `callbacks` (ember.callbacks: EarlyStopping, ModelCheckpoint, or a
        `Callback` of your own) run around each epoch and step, and can stop
        training by setting `stop_training`. `lr_scheduler`
        (ember.optim.lr_scheduler, built on this program) steps after each
        epoch's validation, or after each step with
        `scheduler_interval="step"`; one whose `step` takes a metric
        (ReduceLROnPlateau) gets `val_loss` (without validation: `loss`).

        `distributed=True` (every process of an MPI job, after
        `ember.distributed.init()`, with the same data): rank 0's parameters,
        optimizer state and shuffling RNG are sent to every rank; each epoch
        is shuffled alike everywhere and cut into one shard per rank (as
        PyTorch's DistributedSampler), each rank steps on `batch_size` rows of
        its shard with `train_step(..., distributed=True)`, so a step trains
        on `batch_size` times the ranks rows. Losses are means over the
        ranks; validation and the epochs' metrics run each rank on its share
        of the rows, then gather the sums and predictions everywhere (the
        history is the same on every rank, and equals one process's to
        round-off); the progress bar shows on rank 0 only, and
        ModelCheckpoint saves from rank 0 only."""
        self._require_training("fit")
        if misplaced:
            raise ConfigError(
                f"fit takes only x and y by position, got {len(misplaced)} more ({_shown(misplaced)}): "
                "pass the others by name, such as fit(x, y, epochs=10, batch_size=32)"
            )
        batch_size = self.batch_size if batch_size is None else batch_size
        options = FitOptions(epochs, batch_size, shuffle, drop_last, progress)
        chosen = self._chosen_metrics(metrics)
        data = self._check_batch(x, y, sample_weight=sample_weight)
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                raise ConfigError("validation_data must be a pair (x, y)")
            validation = self._check_batch(*validation_data, prefix="validation ")
        elif validation_split:
            data, validation = split_validation(data, validation_split)
        callbacks = () if callbacks is None else callbacks
        team = self._team() if distributed else None
        checkpoints = isinstance(callbacks, Iterable) and any(isinstance(c, ModelCheckpoint) for c in callbacks)
        if checkpoints and self._shard is not None:
            raise ConfigError(
                "ModelCheckpoint saves the whole optimizer state, and each process holds its share only "
                "(shard_optimizer_state): call prog.gather_optimizer_state() on every process first"
            )
        evaluate = functools.partial(self._evaluate, metrics=chosen, team=team)
        train_batch = self._train_batch if team is None else functools.partial(self._distributed_batch, team=team)
        if team is not None:
            self._take_rank_zeros_state(team)
            if team.rank != 0:  # rank 0 reports and saves
                options = dataclasses.replace(options, progress=False)
                if isinstance(callbacks, Iterable):  # else _fit_events refuses it
                    callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        events = self._fit_events(callbacks, lr_scheduler, scheduler_interval, validation is not None)
        return fit_loop(
            train_batch,
            evaluate,
            data,
            validation,
            options,
            self._rng,
            events if team is None else AgreedEvents(events, team),
            epoch_logs=lambda: {"lr": self.lr},
            train_metrics=functools.partial(self._epoch_metrics, metrics=chosen, team=team) if metrics else None,
            shard=(0, 1) if team is None else (team.rank, team.size),
        )

    def _team(self) -> World | None:
        """The MPI job of a distributed step or fit; None for a job of one
        (then the step is the ordinary one)."""
        from .distributed import world

        team = world()
        return team if team.size > 1 else None

    def shard_optimizer_state(self) -> None:
        """Keep only this process's share of the optimizer state, as
        torch.distributed.optim.ZeroRedundancyOptimizer does (ZeRO stage 1):
        each parameter goes to one process (the largest first, each to the
        process holding the fewest numbers so far), which alone keeps its
        optimizer state (Adam's two moments, ...) and updates it in a
        distributed step; the owners then hand the updated parameters to
        the others (through the shared gradients' buffer on one host, by
        broadcasts across hosts). The optimizer's memory falls up to N-fold
        over N processes (parameters are not split: the largest bounds it),
        and the steps train exactly as before. Call it on every process of
        the job at the same point (after `ember.distributed.init()`): every
        one starts from rank 0's parameters and state. Until
        `gather_optimizer_state()`, whatever needs the whole state (a step
        without distributed=True, `optimizer_state`, a checkpoint, fit with
        ModelCheckpoint, profile with targets, an export with train=True)
        raises a ConfigError. In a job of one process it does nothing."""
        self._require_training("shard_optimizer_state")
        team = self._team()
        if team is None or self._shard is not None:
            return
        self._take_rank_zeros_state(team)
        with self._lock:
            self._add_split_step()
            graphs = self._graphs
            trained = [name for name in self._param_names if grad_name(name) in graphs["backward"].outputs]
            owners = partition({name: self._params[name].size for name in trained}, team.size)
            mine = [name for name in trained if owners[name] == team.rank]
            autodiff = self._stages["autodiff"]
            apply = build_sharded_apply(autodiff, self._optimizer, mine, self.log, self.clipping, self.lr_schedule)
            share = Arena({s.name: s.type.shape for s in apply.state}, self.dtype.numpy)
            for name in share.names():
                np.copyto(share[name], self._state[name])
            state_owners = {
                f"{name}.{slot}": owners[name]
                for group in self._optimizer.param_groups
                for name in group[PARAMS]
                if name in owners
                for slot in self._optimizer.state_slots(group)
            }
            executable = self._executable({"apply": apply}, share)
            self._shard = OptimizerShard(owners, state_owners, share, executable)
            self._use_state(Arena({}, self.dtype.numpy))  # the whole state's memory goes
            self._bind_apply()

    def gather_optimizer_state(self) -> None:
        """Every process holds the whole optimizer state again (each
        parameter's from its owner), undoing `shard_optimizer_state`. Call
        it on every process of the job at the same point."""
        team = self._team()
        if team is None or self._shard is None:
            return
        with self._lock:
            shard, train = self._shard, self._graphs["train"]
            whole = Arena({s.name: s.type.shape for s in train.state}, self.dtype.numpy)
            for name in whole.names():
                if name in shard.state:
                    np.copyto(whole[name], shard.state[name])
            for name in whole.names():
                team.broadcast(whole[name], root=shard.owner_of_state(name))
            self._shard = None
            self._use_state(whole)
            self._bind_apply()

    def _use_state(self, state: Arena) -> None:
        """Run the program's graphs against optimizer state `state` from now on."""
        self._state = state
        self._exec.use_state(state)

    def _executable(self, graphs: dict[str, Graph], state: Arena) -> NativeExecutable | ReferenceExecutable:
        """An executable of `graphs` over the program's parameters and `state`,
        on the program's backend."""
        if self._native is None:
            return ReferenceExecutable(graphs, self._params, state, self._fixed_inputs())
        build = build_native(graphs, self._params.byte_offsets, state.byte_offsets, host(), self.log)
        return NativeExecutable(build, self._params, state, self._lock, self._fixed_inputs())

    def _take_rank_zeros_state(self, team: World) -> None:
        """Parameters, buffers, optimizer state, the random numbers' step and
        the shuffling RNG as rank 0 has them: every rank starts alike."""
        with self._lock:
            team.broadcast(self._params.buffer)
            if self._shard is None:  # shards are cut from rank 0's state, and stay alike
                team.broadcast(self._state.buffer)
            team.broadcast(self._rng_key[RNG_STEP])
            self._rng.bit_generator.state = team.comm.bcast(self._rng.bit_generator.state, root=0)

    def profile(self, x: Any, y: Any = None, *, steps: int = 20, sample_weight: Any = None) -> Profile:
        """Time every kernel of `steps` calls (after a few warm-up calls) and
        return where the time goes; print it for a table like
        `torch.profiler`'s key averages, with each kernel's GFLOP/s, GB/s
        and roofline bound. With `y`, the training step (then parameters,
        optimizer state and the random-number step are put back as they
        were: profiling does not train); without, `predict`. Native backend only."""
        if self._native is None:
            raise ConfigError("profile times native code; this program runs on the reference backend")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        if y is None:
            inputs, graph = self._check_inputs(x, minimum_rows=0), "predict"

            def step(ticks: np.ndarray) -> object:
                with self._lock:
                    return self._exec.run_profiled("predict", self._check_inputs(x, minimum_rows=0), ticks)
        else:
            self._require_training("profile with targets")
            self._require_whole_state("profile with targets")
            inputs, graph = self._check_batch(x, y, sample_weight=sample_weight), "train"

            def step(ticks: np.ndarray) -> object:
                return self._train_batch(self._check_batch(x, y, sample_weight=sample_weight), ticks)

        with self._lock:
            saved = self._params.buffer.copy(), self._state.buffer.copy(), self.rng_step
        try:
            return profile_entry(self._native.programs[graph], self._exec.sizes(graph, inputs), step, steps)
        finally:
            with self._lock:
                np.copyto(self._params.buffer, saved[0])
                np.copyto(self._state.buffer, saved[1])
                self._rng_key[RNG_STEP][...] = saved[2]

    def release_memory(self) -> None:
        """Give back the memory native calls keep between calls (workspace
        and scratch for intermediate values, per-thread matmul buffers); the
        next call allocates what it needs again. Parameters, optimizer state
        and compiled code stay. Without it, each entry (train_step, predict,
        ...) keeps buffers sized for its latest call: they grow when a call
        needs more and are given back when a call needs less than a quarter
        of them, so a huge predict followed by small ones frees its memory."""
        self._exec.release_memory()
        if self._shard is not None:
            self._shard.executable.release_memory()

    # -- parameters, checkpoints, dumps ---------------------------------
    def set_parameters(self, values: Mapping[str, Any], strict: bool = True) -> None:
        """Load parameter values by name. All are checked before any is
        written; with `strict`, every parameter must be given."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"set_parameters needs a dict of name -> array, got {type(values).__name__}")
        names = self._param_names
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r}; this program has {', '.join(names)}")
        missing = [k for k in names if k not in values]
        if strict and missing:
            raise ConfigError(f"missing parameter {missing[0]!r} (pass strict=False to load a subset)")
        checked = {}
        for name, value in values.items():
            expected = self._graphs["predict"].argument(name).type
            array = check_array(f"parameter {name}", value, expected)
            checked[name] = array
        with self._lock:
            for name, array in checked.items():
                np.copyto(self._params[name], array)

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """The parameters and persistent buffers under PyTorch's names and in
        its order, as NumPy copies (integer buffers such as
        `num_batches_tracked` as int64, the rest in the program's dtype)."""
        with self._lock:
            return give_out(self._state_layout, self._params.copies())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Load parameters and persistent buffers by name from `state_dict`
        (this program's, or a PyTorch model's: anything NumPy converts, torch
        tensors included). Every key, shape and dtype is checked before
        anything is written. With `strict`, keys must match exactly;
        otherwise the matching ones load. Returns the missing and unexpected
        keys, as PyTorch does."""
        shapes = {name: self._params[name].shape for name in self._state_layout.names}
        arrays, keys = check_state_dict(self._state_layout, shapes, self.dtype, state_dict, strict)
        with self._lock:
            for name, array in arrays.items():
                np.copyto(self._params[name], array)
        return keys

    def save(self, path: str | os.PathLike) -> None:
        """Write the program (IR, parameters, optimizer state, settings and the
        shuffling RNG) to one `.npz` file, atomically. A symlink at `path` is
        followed: the file it points to is replaced. `ember.load(path)` reads
        it back."""
        checkpoint_path(path)  # a bad path fails here, before any work
        save_checkpoint(path, self._checkpoint())

    def export(
        self,
        directory: str | os.PathLike,
        name: str = "model",
        *,
        train: bool = False,
        weights: str = "baked",
        max_batch: int = 256,
        cpu: str | None = None,
        shared: bool = False,
        threads: int = 1,
    ) -> list[Path]:
        """Compile the model ahead of time to C: `directory/NAME.h` declares
        `int NAME_predict(const float *x, float *y, size_t n)` and
        `directory/NAME.o` holds the code and the current weights; it needs no
        Python, ember or malloc, and links with `cc main.c NAME.o -lm`.

        `train`: also `NAME_train_step` and its context (parameters, optimizer
        state), taking at most `max_batch` rows a step; predict runs
        `max_batch` rows a call. `weights="external"`: NAME_predict takes the
        weights as its first argument (written to `NAME.weights`) instead of
        baking them in. `cpu`: an LLVM CPU name (`x86-64-v3`, `znver4`, ...)
        to build for another machine (default: this one). `shared`: also
        link `libNAME.so` (needs a C compiler). `threads`: the most threads
        its kernels may use (`NAME_set_threads` starts them; the default, 1,
        runs everything on the calling thread). Returns the files written."""
        from .runtime.export import export  # imported here: it loads LLVM

        if train:
            self._require_training("export(train=True)")
        with self._lock:
            source = self._export_source(train)
        options = {"weights": weights, "max_batch": max_batch, "cpu": cpu, "shared": shared, "threads": threads}
        return export(source, directory, name, **options)

    def _export_source(self, train: bool) -> ExportSource:
        """The graphs, arenas and inputs an export compiles in (call with the lock held)."""
        if train:
            self._require_whole_state("an export with train=True")
        from .runtime.export import ArenaImage, ExportSource

        graphs = {"predict": self._graphs["predict"]} | ({"train": self._graphs["train"]} if train else {})
        used = {a.name for graph in graphs.values() for a in graph.inputs}
        fixed = self._fixed_inputs()
        groups = len(self.param_groups)
        labels = None
        if train and len(self._target_arguments) == 1 and self._target_arguments[0][2].get("num_classes"):
            info = self._target_arguments[0][2]
            labels = (info["num_classes"], info.get("ignore_index"))
        return ExportSource(
            graphs=graphs,
            dtype=self.dtype,
            params=ArenaImage.of(self._params),
            state=ArenaImage.of(self._state),
            fixed={key: value.copy() for key, value in fixed.items() if key in used},
            lr_inputs=tuple(scalar_name("lr", i, groups) for i in range(groups)) if train else (),
            rng_step=RNG_STEP if train and "train" in self._random else None,
            sample_weight=SAMPLE_WEIGHT if train and self._weighted else None,
            labels=labels,
            index_rows=self._index_inputs.get(self._input_arguments[0].name),
        )

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Pickle (and `copy.copy`, `copy.deepcopy`) as checkpoint bytes, never
        as code: the copy is rebuilt as `ember.load` rebuilds a file."""
        from .restore import program_from_bytes  # it builds Programs, so it imports this module

        return program_from_bytes, (checkpoint_bytes(self._checkpoint()),)

    @property
    def stages(self) -> list[str]:
        """The stages this program can dump."""
        native = NATIVE_STAGES if self._native is not None else ()
        return [s for s in STAGES if s in self._stages or s in native]

    def dump(self, stage: str = "graph") -> str:
        """The text of one compiler stage (see `ember.STAGES`). The native
        stages (`fused` onwards) show the training step of a training
        program and `predict` of an inference-only one."""
        if stage in self._stages:
            return print_graph(self._stages[stage])
        if stage in NATIVE_STAGES and self._native is not None:
            return self._native.dump(stage)
        if stage in NATIVE_STAGES:
            raise ConfigError(
                f"stage {stage!r} is produced by the native backend; this program runs on the "
                f"{self.backend} backend (available stages: {', '.join(self.stages)})"
            )
        if stage in STAGES:
            raise ConfigError(f"this is an inference-only program (no loss or optimizer), so it has no {stage!r} stage")
        raise ConfigError(f"unknown stage {stage!r}; stages are: {', '.join(STAGES)}")

    # -- internals -----------------------------------------------------
    def _require_training(self, what: str) -> None:
        if not self.is_training:
            raise ConfigError(f"{what} needs a program compiled with loss= and optimizer=")

    def _require_whole_state(self, what: str) -> None:
        if self._shard is not None:
            raise ConfigError(
                f"{what} needs the whole optimizer state, and this process holds its share only "
                "(shard_optimizer_state): call prog.gather_optimizer_state() on every process first"
            )

    def _fixed_inputs(self) -> dict[str, np.ndarray]:
        """The inputs every native call reads where they are: the random
        numbers' seed and step, and the hyperparameters."""
        return {**self._rng_key, **(self._hyper.inputs if self._hyper else {})}

    def _target_names(self) -> list[str]:
        return names(TARGET, len(self._loss_infos()))

    def _targets(self) -> list[tuple[str, TensorType, dict[str, Any]]]:
        """(name, type, loss info) of each target."""
        evaluate = self._graphs["evaluate"]
        return [
            (name, evaluate.argument(name).type, info)
            for name, info in zip(self._target_names(), self._loss_infos(), strict=True)
        ]

    def _loss_infos(self) -> list[dict[str, Any]]:
        """The info of each loss, one per output."""
        return list(self.loss_info.get("losses", [self.loss_info]))

    def _check_inputs(self, x: Any, minimum_rows: int = 1, prefix: str = "") -> Batch:
        """The inputs by graph name, each checked, all of the same rows."""
        arguments = self._input_arguments
        values = _per_argument(x, len(arguments), f"{prefix}x", "input")
        batch: Batch = {}
        rows = None
        for argument, value in zip(arguments, values, strict=True):
            array = check_array(prefix + argument.name, value, argument.type, rows=rows)
            rows = check_rows(prefix + argument.name, array, minimum_rows) if rows is None else rows
            batch[argument.name] = array
        if self._index_inputs:
            self._check_indices({name: (prefix + name, array) for name, array in batch.items()})
        return batch

    def _check_batch(self, x: Any, y: Any, prefix: str = "", sample_weight: Any = None) -> Batch:
        """Inputs, targets and sample weights (ones when not given) by graph
        name, each checked, all of the same rows."""
        batch = self._check_inputs(x, prefix=prefix)
        rows = next(iter(batch.values())).shape[0]
        targets = self._target_arguments
        values = _per_argument(y, len(targets), f"{prefix}y", "target")
        for (name, type, info), value in zip(targets, values, strict=True):
            array = check_array(prefix + name, value, type, rows=rows)
            if info.get("num_classes"):
                check_labels(prefix + name, array, info["num_classes"], info.get("ignore_index"))
            batch[name] = array
        if self._index_inputs:
            self._check_indices({name: (prefix + name, batch[name]) for name, _, _ in targets})
        if self._weighted:
            batch[SAMPLE_WEIGHT] = self._sample_weights(sample_weight, rows, prefix)
        elif sample_weight is not None:
            raise ConfigError(
                "this program takes no sample weights: its loss returns a scalar, not the loss of each sample"
            )
        return batch

    def _sample_weights(self, value: Any, rows: int, prefix: str) -> np.ndarray:
        """`value` checked as sample weights (one finite number >= 0 per row), or ones."""
        name = prefix + SAMPLE_WEIGHT
        if value is None:
            if self._ones.shape[0] != rows:  # kept: a step allocates nothing for unweighted data
                ones = np.ones(rows, self.dtype.numpy)
                ones.flags.writeable = False
                self._ones = ones
            return self._ones
        weights = check_array(name, value, TensorType(self.dtype, (BATCH,)), rows=rows)
        bad = np.flatnonzero(~(weights >= 0) | ~np.isfinite(weights))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"{name}[{i}] = {weights[i]}: sample weights must be finite numbers >= 0")
        return weights

    def _check_indices(self, arrays: dict[str, tuple[str, np.ndarray]]) -> None:
        """Inputs that index embedding tables must name rows of them: native
        code clamps any index into its table, but a wrong index is the
        caller's mistake, reported before anything runs."""
        for arg, rows in self._index_inputs.items():
            if arg in arrays:
                check_indices(*arrays[arg], rows)

    def _checkpoint(self) -> Checkpoint:
        """Everything a checkpoint holds, taken at one moment."""
        self._require_whole_state("a checkpoint")
        meta = {
            "dtype": self.dtype.name,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "backend": self.backend,
            "lr": self.lr,
            "param_groups": self._hyper.runtime_values() if self._hyper else [],
            "loss": self.loss_info,
            "frozen": list(self.frozen),
            "state_dict": self._state_layout.to_json(),
            "optimizer": (
                {
                    "name": type(self.optimizer).__name__,
                    "hyperparameters": self.optimizer.hyperparameters(),
                    "param_groups": self.optimizer.param_groups,
                }
                if self.optimizer
                else None
            ),
        }
        if self.clipping:
            meta[CLIP_GRAD_SETTING] = self.clipping.to_json()
        if self.lr_schedule:
            meta[LR_SCHEDULE_SETTING] = self.lr_schedule.to_json()
        texts = {name: print_graph(g) for name, g in self._sources.items()}
        with self._lock, self._rng.bit_generator.lock:  # fit draws from the RNG outside self._lock
            meta["rng"] = self._rng.bit_generator.state
            meta["rng_step"] = self.rng_step
            params = {name: self._params[name].copy() for name in self._param_names}
            buffers = {name: self._params[name].copy() for name in self._buffer_names}
            return Checkpoint(meta, texts, params, self._state.copies(), buffers)

    def _restore(self, state: Mapping[str, np.ndarray], rng: Any, rng_step: int = 0) -> None:
        """Set the optimizer state, (unless None) the shuffling RNG's state and
        the random numbers' step counter from a checkpoint, which ember.restore checked."""
        with self._lock:
            self._require_whole_state("restoring optimizer state")
            for name, value in state.items():
                np.copyto(self._state[name], value)
            if rng is not None:
                self._rng.bit_generator.state = rng
            self._rng_key[RNG_STEP][...] = rng_step

    def _fit_events(self, callbacks: Iterable[Callback], scheduler: Any, interval: str, validated: bool) -> Events:
        """fit's callbacks, the learning-rate scheduler's stepping first (so
        a checkpoint saved at an epoch's end holds the next epoch's lr)."""
        if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable):
            raise ConfigError(f"callbacks must be a list of Callback instances, got {type(callbacks).__name__}")
        if interval not in SCHEDULER_INTERVALS:
            raise ConfigError(f'scheduler_interval must be "epoch" or "step", got {interval!r}')
        owner = getattr(scheduler, "program", self)
        if isinstance(owner, Program) and owner is not self:
            raise ConfigError("lr_scheduler was built on another program: build it on the one you fit")
        monitor = "val_loss" if validated else "loss"
        stepping = [] if scheduler is None else [SchedulerStep(scheduler, interval, monitor)]
        return CallbackList(self, [*stepping, *callbacks])

    def _train_batch(self, batch: Batch, ticks: np.ndarray | None = None) -> float:
        """One step on a checked batch (`ticks`: through the profiled entry, see `profile`)."""
        with self._lock:
            self._require_whole_state("a training step without distributed=True")
            if ticks is not None:
                outputs = self._exec.run_profiled("train", batch, ticks)
            elif (outputs := self._exec.rerun("train", batch) if self._rerun else None) is None:
                outputs = self._exec.run("train", batch)
            loss = float(outputs[LOSS])
            self._advance_rng("train")
            return loss

    def _step_again(self, x: Any, y: Any) -> float | None:
        """`train_step(x, y)` on arrays of exactly the types of the last
        step's (checked then), of unweighted rows: only the class labels'
        values are checked. None, and nothing done, for any other arrays."""
        inputs = {self._input_name: x}
        validate = None
        if self._target_arguments:
            name, _, info = self._target_arguments[0]
            inputs[name] = y
            if info.get("num_classes"):
                classes, ignored = info["num_classes"], info.get("ignore_index")
                validate = functools.partial(check_labels, name, y, classes, ignored)
        if self._weighted:
            inputs[SAMPLE_WEIGHT] = self._ones  # the ones of the latest rows: another batch size is not prepared
        with self._lock.current:
            self._require_whole_state("a training step without distributed=True")
            outputs = self._exec.rerun("train", inputs, validate)
            if outputs is None:
                return None
            self._advance_rng("train")
        return float(outputs[LOSS])

    def _distributed_batch(self, batch: Batch, *, team: World) -> float:
        """A step split in two: backward (loss and gradients, into one
        buffer), the buffers' mean over the processes, then apply."""
        with self._lock:
            self._add_split_step()
            exchange = self._gradient_mean(team)
            # SyncBatchNorm's statistics: the whole batch's (a model without any skips the block's ~5 us)
            with reducing_over(team.allreduce_sum) if self._collective_backward else contextlib.nullcontext():
                self._exec.run("backward", batch)
            self._advance_rng("backward")
            exchange.reduce()
            if self._shard is None:
                return float(self._exec.run("apply", {})[LOSS])
            loss = float(self._shard.executable.run("apply", {})[LOSS])
            slots = {name: self._averaged[grad_name(name)] for name in self._shard.owners}
            self._shard.share_parameters(exchange, self._params, slots)
            return loss

    def _add_split_step(self) -> None:
        """Build the graphs of a distributed step's two halves, once (the
        executables hold `_graphs`, and compile them when first run)."""
        if "backward" not in self._graphs:
            backward, apply = build_split_step(
                self._stages["autodiff"], self._optimizer, self.log, self.clipping, self.lr_schedule
            )
            self._graphs.update(backward=backward, apply=apply)
            self._collective_backward = any(node.op.kind == "collective" for node in backward.nodes)
            if any(a.name in RNG_INPUTS for a in backward.inputs):
                self._random.add("backward")

    def _gradient_mean(self, team: World) -> GradientMean:
        """The buffers of the backward half's outputs (the loss, then each
        gradient) and of their mean over `team`, made once per job: the
        backward half writes its outputs into the first and the apply half
        reads its inputs from the second, where they are bound."""
        if self._gradient_exchange is None or self._gradient_exchange.world is not team:
            outputs = self._graphs["backward"].outputs
            sizes = [math.prod(v.type.shape) for v in outputs.values()]
            exchange = team.gradient_mean(sum(sizes), self.dtype.numpy)

            def views(buffer: np.ndarray) -> dict[str, np.ndarray]:
                views, start = {}, 0
                for (name, value), size in zip(outputs.items(), sizes, strict=True):
                    views[name] = buffer[start : start + size].reshape(value.type.shape)
                    start += size
                return views

            self._exec.bind("backward", outputs=views(exchange.local))
            self._gradient_exchange, self._averaged = exchange, views(exchange.mean)
            self._bind_apply()
        return self._gradient_exchange

    def _bind_apply(self) -> None:
        """The apply half that runs now (the whole update, or this process's
        share) reads its inputs from the gradients' mean, once there is one."""
        if self._gradient_exchange is not None:
            (self._exec if self._shard is None else self._shard.executable).bind("apply", inputs=self._averaged)

    def _advance_rng(self, graph: str) -> None:
        """After a training-mode run of `graph` that drew random numbers: the
        next one draws new ones (as every PyTorch forward in train mode does).
        Call with the lock held."""
        if graph in self._random:
            self._rng_key[RNG_STEP][...] += 1

    def _chosen_metrics(self, metrics: Sequence[Any] | None) -> list[list[Metric]]:
        """The metrics of each output: accuracy for a classification loss,
        then those asked for that fit it (a ConfigError if one fits none)."""
        infos = self._loss_infos()
        evaluate = self._graphs["evaluate"]
        shapes = [
            (type.shape[1:], evaluate.outputs[out].type.shape[1:])
            for (_, type, _), out in zip(self._target_arguments, names(PREDICTION, len(infos)), strict=True)
        ]
        asked = metric_table.fitting(metric_table.resolve(metrics), infos, shapes)
        chosen = []
        for info, extra in zip(infos, asked, strict=True):
            defaults = metric_table.default_metrics(info)
            chosen.append(defaults + [m for m in extra if m.name not in {d.name for d in defaults}])
        return chosen

    def _epoch_metrics(self, batch: Batch, metrics: list[list[Metric]], team: World | None = None) -> dict[str, float]:
        """The metrics of the training data after an epoch (not its loss:
        fit reports the mean loss of the epoch's steps)."""
        evaluated = self._evaluate(batch, metrics, team)
        return {name: value for name, value in evaluated.items() if not name.startswith(LOSS)}

    def _evaluate(
        self, batch: Batch, metrics: list[list[Metric]] | None = None, team: World | None = None
    ) -> dict[str, float]:
        """Loss and metrics of `batch`; with `team` (a distributed fit), each
        rank runs its share of the rows and every rank gets the whole result."""
        metrics = metrics or self._chosen_metrics(None)
        with self._lock:  # every chunk sees the same parameters
            if team is None:
                return self._evaluation(batch, metrics, *self._evaluation_sums(batch, metrics))
            rows = next(iter(batch.values())).shape[0]
            share = slice(team.rank * rows // team.size, (team.rank + 1) * rows // team.size)
            sums = self._evaluation_sums({name: array[share] for name, array in batch.items()}, metrics)
            shares = team.allgather(sums)  # in rank order: the rows' order
        totals = [math.fsum(share[0][i] for share in shares) for i in range(len(sums[0]))]
        counts = [math.fsum(share[1][i] for share in shares) for i in range(len(sums[1]))]
        predictions = [[p for share in shares for p in share[2][i]] for i in range(len(sums[2]))]
        return self._evaluation(batch, metrics, totals, counts, predictions)

    def _evaluation_sums(
        self, batch: Batch, metrics: list[list[Metric]]
    ) -> tuple[list[float], list[float], list[list[np.ndarray]]]:
        """Per output: the loss summed over `batch` in chunks (each chunk's
        mean times its denominator), the denominators' sum, and the
        predictions its metrics need, chunk by chunk."""
        infos = self._loss_infos()
        losses, outs, targets = names(LOSS, len(infos)), names(PREDICTION, len(infos)), self._target_names()
        totals, counts = [0.0] * len(infos), [0.0] * len(infos)
        predictions: list[list[np.ndarray]] = [[] for _ in infos]
        rows = next(iter(batch.values())).shape[0]
        for start in range(0, rows, EVAL_CHUNK_ROWS):
            chunk = {name: array[start : start + EVAL_CHUNK_ROWS] for name, array in batch.items()}
            out = self._exec.run("evaluate", chunk)
            for i, info in enumerate(infos):
                weight = _mean_denominator(info, chunk[targets[i]]) if _is_mean(info) else 1
                if weight:  # a chunk of nothing but ignored labels has the mean NaN and adds nothing
                    totals[i] += float(out[losses[i]]) * weight
                    counts[i] += weight
                if metrics[i]:
                    predictions[i].append(out[outs[i]].copy())
        return totals, counts, predictions

    def _evaluation(
        self,
        batch: Batch,
        metrics: list[list[Metric]],
        totals: list[float],
        counts: list[float],
        predictions: list[list[np.ndarray]],
    ) -> dict[str, float]:
        """The loss and metrics of `batch`, from its sums (`_evaluation_sums`)."""
        infos, targets = self._loss_infos(), self._target_names()
        results = []
        for i, (total, count, info, target) in enumerate(zip(totals, counts, infos, targets, strict=True)):
            with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: NaN, as PyTorch
                result = {"loss": float(np.float64(total) / count) if _is_mean(info) else total}
            if metrics[i]:
                result.update(metric_table.compute(metrics[i], info, batch[target], np.concatenate(predictions[i])))
            results.append(result)
        return results[0] if len(results) == 1 else _per_output(results, self.loss_info["weights"])


def _shown(values: tuple[Any, ...]) -> str:
    """Numbers and strings as written, anything else by its type."""
    return ", ".join(repr(v) if isinstance(v, numbers.Number | str) else type(v).__name__ for v in values)


def _is_mean(info: Mapping[str, Any]) -> bool:
    """A loss whose chunks' values are means, to be added up by their denominators."""
    return info.get("reduction", "mean") in ("mean", "batchmean")


def _mean_denominator(info: Mapping[str, Any], y: np.ndarray) -> float:
    """What a chunk's mean loss was divided by: its rows, or for a loss that
    divides by the targets' class weights, theirs (ignored labels left out),
    so that chunks add up to the mean of the whole data set."""
    if "class_weight" not in info:
        return float(len(y))
    kept = y[(y >= 0) & (y < info["num_classes"]) & (y != info.get("ignore_index"))]
    weight = info["class_weight"]
    return float(len(kept)) if weight is None else float(np.sum(np.asarray(weight, np.float64)[kept]))


def _per_output(metrics: list[dict[str, float]], weights: Sequence[float]) -> dict[str, float]:
    """The metrics of several outputs: the weighted total `loss`, then each
    output's metrics numbered (`loss0`, `accuracy0`, `loss1`, ...)."""
    result = {"loss": sum(w * m["loss"] for w, m in zip(weights, metrics, strict=True))}
    for i, metric in enumerate(metrics):
        result.update({f"{name}{i}": value for name, value in metric.items()})
    return result


def _per_argument(value: Any, count: int, what: str, kind: str) -> tuple[Any, ...]:
    """`value` as one value per argument: itself for one, its items for several."""
    if count == 1:
        return (value,)
    if not isinstance(value, tuple | list) or len(value) != count:
        raise InputError(
            f"this model takes {count} {kind}s: pass {what} as a tuple ({', '.join(names(what, count))}), "
            f"got {type(value).__name__}" + (f" of {len(value)}" if isinstance(value, tuple | list) else "")
        )
    return tuple(value)


def _learning_rate(value: Any, dtype: DType) -> float:
    """`value` as a learning rate: a real number >= 0, finite in `dtype`
    (1e39 is not a float32 learning rate: it would train with inf)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        try:
            rate = float(value)
        except OverflowError:
            rate = math.inf
        with np.errstate(over="ignore"):
            if rate >= 0 and np.isfinite(dtype.numpy.type(rate)):
                return rate
    raise ConfigError(f"learning rate must be a finite {dtype.numpy} number >= 0, got {value!r}")


def parse_dtype(dtype: Any) -> DType:
    try:
        parsed = DType.parse(dtype)
    except (KeyError, TypeError):
        parsed = None
    if parsed is None or not parsed.is_float:
        raise ConfigError(f'dtype must be "float32" or "float64", got {dtype!r}')
    return parsed
