"""Ahead-of-time export: a model's predict (and training step) as one LLVM
module behind a C interface, for an object file that runs without Python.

The kernels and entry functions are the ones the JIT runs, from the same
code generator; around them this module emits the C functions a header
declares (runtime/export.py writes the files). Everything is internal but
those functions, so two exported models link into one program.

Memory: nothing is allocated at run time. The caller's context (`--train`)
holds, 64-byte aligned, in this order:

    header     magic (8 bytes: says `NAME_init` ran for this model)
    fixed      the fixed inputs (hyperparameters, the random numbers' key)
    ones       sample weights of 1 for `max_batch` rows (weighted losses)
    params     the model arena (params, then buffers)
    state      the optimizer state arena
    ---------- the image ends here: `NAME_init` copies it from the object
    workspace  of the training step, then of predict, at `max_batch` rows
    scratch    the larger of the two entries' shared scratch
    threads    each thread's scratch
    loss       where the loss goes when the caller passes NULL

`NAME_predict` (baked weights) reads the image in the object and keeps its
workspace in a zeroed static frame, so it is not reentrant: calls from
several threads must not overlap. It runs any number of rows, `max_batch`
at a time; a training step takes at most `max_batch` rows.

Threads: an export for one thread runs every task of a kernel in a loop;
one for `threads` > 1 carries the JIT's thread pool (codegen/threads.py)
with its state in a static array, and `NAME_set_threads` starts its
workers with pthreads (`NAME_stop_threads` joins them)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np

from ..ir import BATCH, ConfigError, DType, Graph
from .backend import object_machine, optimized
from .codegen.collective import emit_group_support
from .codegen.gemm_library import GemmLibrary
from .codegen.irutil import I1, I8, I32, I64, PTR, VOID, for_range, i64, memory_type, scalar_type, smin
from .codegen.module import emit_program
from .codegen.pool_state import FUTEXES, POOL_SLOTS, STOP
from .codegen.target import Target
from .codegen.threads import TASK_POINTER, emit_pool_module
from .memory import packed_offsets
from .plan import ALLREDUCE_SUM, KernelProgram

OK, ERROR_NULL, ERROR_ROWS, ERROR_CONTEXT, ERROR_LABEL, ERROR_VALUE, ERROR_THREADS, ERROR_INDEX = range(8)
"""The return codes of every exported function (the header names them)."""

ERRORS = {
    OK: "success",
    ERROR_NULL: "a pointer argument is NULL",
    ERROR_ROWS: "n is out of range (a training step takes 1 to MAX_BATCH rows)",
    ERROR_CONTEXT: "the context is NULL, not 64-byte aligned, or not initialized by NAME_init",
    ERROR_LABEL: "a label is not a class index in [0, CLASSES) (nor the ignored index)",
    ERROR_VALUE: "the learning rate is negative or not a number",
    ERROR_THREADS: "a thread count below 1, or the system could not start a thread",
    ERROR_INDEX: "a value of x is not a row index in [0, TABLE_ROWS) of the embedding table it indexes",
}

HEADER_BYTES = 64
"""The context's header: its magic number, on a cache line of its own."""

STATIC_LIMIT = 2**31
"""The most static memory (and context) an export lays out: the small code
model addresses its data within +-2 GiB of the code."""


@dataclass(frozen=True)
class Labels:
    """Class-index targets: valid in [0, classes), or equal to `ignore_index`."""

    classes: int
    ignore_index: int | None


@dataclass(frozen=True)
class ExportSpec:
    """What an export needs from a Program, in plain data."""

    name: str
    dtype: DType
    """The program's: of its parameters, state and learning rate."""
    max_batch: int
    predict: KernelProgram
    train: KernelProgram | None
    params: bytes
    """The model arena (params then buffers) as the program holds it."""
    tensors: tuple[tuple[str, int, int], ...]
    """Each tensor of the model arena: (name, byte offset, bytes)."""
    state: bytes
    """The optimizer state arena."""
    fixed: Mapping[str, bytes]
    """The value of every fixed input of the entries (hyperparameters, the random numbers' key)."""
    lr_inputs: tuple[str, ...] = ()
    """The fixed inputs the training step's learning rate argument sets (one per param group)."""
    rng_step: str | None = None
    """The fixed input a training step advances after it ran, if it draws random numbers."""
    sample_weight: str | None = None
    """The training step's sample-weight input, which the export feeds with ones."""
    labels: Labels | None = None
    external_weights: bool = False
    threads: int = 1
    """The most threads the kernels may use, the caller's included."""
    index_rows: int | None = None
    """With integer inputs that index embedding tables: the fewest rows of those tables."""


@dataclass(frozen=True)
class Argument:
    """An array argument of the C interface: one per row of the batch."""

    name: str
    dtype: DType
    row_shape: tuple[int, ...]

    @property
    def row_values(self) -> int:
        return math.prod(self.row_shape)

    @property
    def row_bytes(self) -> int:
        return self.row_values * self.dtype.itemsize


@dataclass
class Layout:
    """Where everything lives: byte offsets in the context (or the static
    frame of the baked predict), the sizes, and the C arguments."""

    spec: ExportSpec
    x: Argument
    y: Argument
    target: Argument | None
    context: dict[str, int]
    context_bytes: int
    image_bytes: int
    frame: dict[str, int]
    frame_bytes: int
    magic: int


def single_argument(graph: Graph, names: list[str], role: str) -> Argument:
    """The one argument of `graph` among `names`, as a C array of rows."""
    if len(names) != 1:
        raise ConfigError(f"export supports models of one {role}; this one has {len(names)} ({', '.join(names)})")
    value = graph.argument(names[0]) if role != "output" else graph.outputs[names[0]]
    shape = value.type.shape
    if not shape or shape[0] != BATCH or not all(isinstance(d, int) for d in shape[1:]):
        raise ConfigError(f"export needs {role} {names[0]} of shape [B, ...] with fixed sizes past B, got {value.type}")
    return Argument(names[0], value.type.dtype, tuple(shape[1:]))


def emit_export(spec: ExportSpec, target: Target) -> tuple[str, Layout]:
    """The export's LLVM module (its image global declared, not defined:
    see `link_image`) and its layout."""
    for program in filter(None, (spec.predict, spec.train)):
        if set(program.symbols) - {BATCH}:
            raise ConfigError(f"export needs shapes fixed past the batch; {program.name} has sizes {program.symbols}")
    module = ir.Module(name=spec.name)
    module.triple = target.triple
    if spec.threads == 1:
        _emit_serial_pool(module)
    else:
        _emit_thread_pool(module, spec)
    library = GemmLibrary(module)
    needs = {p.name: emit_program(p, module, target, library, profiled=False) for p in _programs(spec)}
    if ALLREDUCE_SUM in module.globals:  # SyncBatchNorm alone: the batch's own statistics
        emit_group_support(module, internal=True)
    layout = _layout(spec, needs)
    _Interface(module, layout).emit()
    for fn in module.functions:
        if not fn.is_declaration and not fn.name.startswith(spec.name + "_"):
            fn.linkage = "internal"
    return str(module), layout


def _programs(spec: ExportSpec) -> list[KernelProgram]:
    return [p for p in (spec.train, spec.predict) if p is not None]


def _emit_serial_pool(module: ir.Module) -> None:
    """The thread pool's two functions, as one thread: the kernels run every
    task on the calling thread (no pthreads, no workers)."""
    run = ir.Function(module, ir.FunctionType(VOID, [TASK_POINTER, PTR, I64]), name="ember_parallel_for")
    task, args, tasks = run.args
    b = ir.IRBuilder(run.append_basic_block("entry"))
    with for_range(b, i64(0), tasks, name="t") as t:
        b.call(task, [args, t, i64(0)])
    b.ret_void()
    threads = ir.Function(module, ir.FunctionType(I64, []), name="ember_pool_threads")
    ir.IRBuilder(threads.append_basic_block("entry")).ret(i64(1))


def _emit_thread_pool(module: ir.Module, spec: ExportSpec) -> None:
    """The JIT's pool, its state a static array, and the C functions that
    start and stop its workers:

        int NAME_set_threads(int64_t count)   use up to `count` threads (the
            caller's included, at most `spec.threads`); starts workers as needed
        void NAME_stop_threads(void)          stop and join every worker"""
    emit_pool_module(module, FUTEXES)
    state = _static(module, spec.name + "_pool", ir.ArrayType(I64, POOL_SLOTS))
    pointer = module.get_global("ember_pool_state")
    pointer.initializer = state  # no ember_pool_init call needed
    pointer.linkage = "internal"
    handles = _static(module, spec.name + "_workers", ir.ArrayType(I64, spec.threads - 1))  # pthread_t
    started = _static(module, spec.name + "_started", I64)
    worker = module.get_global("ember_worker")
    create = ir.Function(module, ir.FunctionType(I32, [PTR, PTR, PTR, PTR]), name="pthread_create")
    join = ir.Function(module, ir.FunctionType(I32, [I64, PTR]), name="pthread_join")
    set_workers = module.get_global("ember_pool_set_workers")

    main = ir.Function(module, ir.FunctionType(PTR, [PTR]), name=spec.name + "_worker_main")
    main.linkage = "internal"
    b = ir.IRBuilder(main.append_basic_block("entry"))
    b.call(worker, [b.ptrtoint(main.args[0], I64)])  # the worker's index came as the thread's argument
    b.ret(ir.Constant(PTR, None))

    fn = ir.Function(module, ir.FunctionType(I32, [I64]), name=spec.name + "_set_threads")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    count = fn.args[0]
    with b.if_then(b.icmp_signed("<", count, i64(1)), likely=False):
        b.ret(_i32(ERROR_THREADS))
    workers = smin(b, b.sub(count, i64(1)), i64(spec.threads - 1))
    with for_range(b, b.load(started, typ=I64), workers, name="w") as w:
        handle = b.gep(handles, [i64(0), w])
        status = b.call(create, [handle, ir.Constant(PTR, None), main, b.inttoptr(w, PTR)])
        with b.if_then(b.icmp_signed("!=", status, _i32(0)), likely=False):
            b.call(set_workers, [b.load(started, typ=I64)])
            b.ret(_i32(ERROR_THREADS))
        b.store(b.add(w, i64(1)), started)
    b.call(set_workers, [workers])
    b.ret(_i32(OK))

    fn = ir.Function(module, ir.FunctionType(VOID, []), name=spec.name + "_stop_threads")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.call(module.get_global("ember_pool_stop"), [])
    with for_range(b, i64(0), b.load(started, typ=I64), name="w") as w:
        b.call(join, [b.load(b.gep(handles, [i64(0), w]), typ=I64), ir.Constant(PTR, None)])
    b.store(i64(0), started)
    b.store(i64(0), b.gep(state, [i64(0), i64(STOP)]))  # the pool may start again
    b.call(set_workers, [i64(0)])
    b.ret_void()


def _static(module: ir.Module, name: str, type: ir.Type) -> ir.GlobalVariable:
    """A zeroed internal global, on a cache line of its own."""
    variable = ir.GlobalVariable(module, type, name=name)
    variable.initializer = ir.Constant(type, None)
    variable.linkage = "internal"
    variable.align = 64
    return variable


def _layout(spec: ExportSpec, needs: Mapping[str, tuple]) -> Layout:
    predict = spec.predict
    x = single_argument(predict.graph, [a.name for a in predict.graph.inputs if a.name not in spec.fixed], "input")
    y = single_argument(predict.graph, list(predict.graph.outputs), "output")
    target = None
    if spec.train is not None:
        graph = spec.train.graph
        names = [
            a.name for a in graph.inputs if a.name not in spec.fixed and a.name not in (x.name, spec.sample_weight)
        ]
        target = single_argument(graph, names, "target")
    sizes = {BATCH: spec.max_batch}
    programs = _programs(spec)
    image_parts = [
        ("magic", HEADER_BYTES),
        *((f"in:{name}", len(value)) for name, value in spec.fixed.items()),
        *(
            [("ones", spec.max_batch * _dtype_of(spec.train, spec.sample_weight).itemsize)]
            if spec.sample_weight is not None
            else []
        ),
        ("params", len(spec.params)),
        ("state", len(spec.state)),
    ]
    work_parts = [
        *((f"{p.name}:workspace:{i}", size.evaluate(sizes)) for p in programs for i, size in enumerate(p.workspace)),
        ("scratch", max(needs[p.name][0].evaluate(sizes) for p in programs)),
        ("threads", max(needs[p.name][1] for p in programs) * spec.threads),
        ("loss", 64),
    ]
    context, total = _packed(image_parts + work_parts)
    image_bytes = _packed(image_parts)[1]
    frame, frame_bytes = _packed(
        [
            *((f"predict:workspace:{i}", size.evaluate(sizes)) for i, size in enumerate(predict.workspace)),
            ("scratch", needs[predict.name][0].evaluate(sizes)),
            ("threads", needs[predict.name][1] * spec.threads),
        ]
    )
    if max(frame_bytes, total) >= STATIC_LIMIT:
        raise ConfigError(
            f"max_batch={spec.max_batch} needs {max(frame_bytes, total) / 2**30:.1f} GiB of workspace; "
            f"an object's static memory and a context stay below 2 GiB: pass a smaller max_batch"
        )
    magic = int.from_bytes(hashlib.sha256(f"{spec.name} {sorted(context.items())}".encode()).digest()[:8], "little")
    return Layout(spec, x, y, target, context, total, image_bytes, frame, max(frame_bytes, 64), magic)


def _packed(parts: list[tuple[str, int]]) -> tuple[dict[str, int], int]:
    """Offsets of the named parts laid out in order, each 64-byte aligned, and the total."""
    offsets, total = packed_offsets(nbytes for _, nbytes in parts)
    return {key: offset for (key, _), offset in zip(parts, offsets, strict=True)}, total


def _dtype_of(program: KernelProgram, name: str) -> DType:
    return program.graph.argument(name).type.dtype


def image(layout: Layout) -> bytes:
    """The context's initial bytes: what `NAME_init` copies."""
    data = bytearray(layout.image_bytes)
    spec = layout.spec
    data[0:8] = layout.magic.to_bytes(8, "little")
    for name, value in spec.fixed.items():
        start = layout.context[f"in:{name}"]
        data[start : start + len(value)] = value
    if spec.sample_weight is not None:
        ones = np.ones(spec.max_batch, _dtype_of(spec.train, spec.sample_weight).numpy).tobytes()
        start = layout.context["ones"]
        data[start : start + len(ones)] = ones
    for region, value in (("params", spec.params), ("state", spec.state)):
        start = layout.context[region]
        data[start : start + len(value)] = value
    return bytes(data)


def _i32(value: int) -> ir.Constant:
    return ir.Constant(I32, value)


class _Interface:
    """Emits the C functions of an export into its module."""

    def __init__(self, module: ir.Module, layout: Layout) -> None:
        self.module = module
        self.layout = layout
        self.spec = layout.spec
        self.prefix = self.spec.name + "_"
        self.image = ir.GlobalVariable(module, ir.ArrayType(I8, layout.image_bytes), name=image_symbol(self.spec))
        self.image.align = 64  # declared here; compile_export links in its definition after optimization
        self.frame = _static(module, self.prefix + "frame", ir.ArrayType(I8, layout.frame_bytes))

    def emit(self) -> None:
        spec = self.spec
        self._emit_predict()
        if spec.train is None:
            return
        self._emit_context_size()
        self._emit_init()
        self._emit_train_step()
        self._emit_context_predict()
        self._emit_parameters("read_parameters", into_context=False)
        self._emit_parameters("write_parameters", into_context=True)

    # -- the functions ---------------------------------------------------
    def _emit_predict(self) -> None:
        """int NAME_predict([const T *weights,] const T *x, T *y, size_t n): baked (or given) weights."""
        names = (["weights"] if self.spec.external_weights else []) + ["x", "y", "n"]
        b, args = self._function("predict", I32, names)
        params = (
            args["weights"] if self.spec.external_weights else self._at(b, self.image, self.layout.context["params"])
        )
        self._check_not_null(b, [args[k] for k in names if k != "n"], args["n"])
        self._check_indices(b, args["x"], args["n"])
        addresses = self._fixed_addresses(b, self.spec.predict, self.image)
        addresses["params"] = params
        for key, offset in self.layout.frame.items():
            addresses[key.removeprefix("predict:")] = self._at(b, self.frame, offset)
        self._predict_chunks(b, addresses, args["x"], args["y"], args["n"])
        b.ret(_i32(OK))

    def _emit_context_predict(self) -> None:
        """int NAME_context_predict(void *ctx, const T *x, T *y, size_t n): the context's parameters."""
        b, args = self._function("context_predict", I32, ["ctx", "x", "y", "n"])
        self._check_context(b, args["ctx"])
        self._check_not_null(b, [args["x"], args["y"]], args["n"])
        self._check_indices(b, args["x"], args["n"])
        addresses = self._context_addresses(b, self.spec.predict, args["ctx"])
        self._predict_chunks(b, addresses, args["x"], args["y"], args["n"])
        b.ret(_i32(OK))

    def _emit_context_size(self) -> None:
        b, _ = self._function("context_size", I64, [])
        b.ret(i64(self.layout.context_bytes))

    def _emit_init(self) -> None:
        """int NAME_init(void *ctx): the exported parameters, optimizer state and hyperparameters."""
        b, args = self._function("init", I32, ["ctx"])
        ctx = args["ctx"]
        self._fail_if(b, self._is_null(b, ctx), ERROR_CONTEXT)
        self._fail_if(b, self._misaligned(b, ctx), ERROR_CONTEXT)
        self._memcpy(b, ctx, self._at(b, self.image, 0), self.layout.image_bytes)
        b.ret(_i32(OK))

    def _emit_train_step(self) -> None:
        """int NAME_train_step(void *ctx, const T *x, const L *y, size_t n, T lr, T *loss)."""
        spec, layout = self.spec, self.layout
        b, args = self._function("train_step", I32, ["ctx", "x", "y", "n", "lr", "loss"])
        ctx, n, lr = args["ctx"], args["n"], args["lr"]
        self._check_context(b, ctx)
        self._fail_if(b, b.or_(self._is_null(b, args["x"]), self._is_null(b, args["y"])), ERROR_NULL)
        too_many = b.icmp_unsigned(">", b.sub(n, i64(1)), i64(spec.max_batch - 1))  # n = 0 wraps around
        self._fail_if(b, too_many, ERROR_ROWS)
        self._check_indices(b, args["x"], n)
        if spec.labels is not None:
            count = b.mul(n, i64(layout.target.row_values))
            self._check_range(b, args["y"], layout.target.dtype, count, spec.labels.classes, spec.labels.ignore_index)
        self._fail_if(b, b.fcmp_unordered("<", lr, ir.Constant(lr.type, 0.0)), ERROR_VALUE)
        for name in spec.lr_inputs:
            b.store(lr, self._at(b, ctx, layout.context[f"in:{name}"]))
        program = spec.train
        addresses = self._context_addresses(b, program, ctx)
        addresses[f"in:{layout.x.name}"] = args["x"]
        addresses[f"in:{layout.target.name}"] = args["y"]
        loss = args["loss"]
        addresses["out:loss"] = b.select(self._is_null(b, loss), self._at(b, ctx, layout.context["loss"]), loss)
        block = self._block(b, program)
        self._call(b, program, block, addresses, n)
        if spec.rng_step is not None:
            step = self._at(b, ctx, layout.context[f"in:{spec.rng_step}"])
            b.store(b.add(b.load(step, typ=I64), i64(1)), step)
        b.ret(_i32(OK))

    def _emit_parameters(self, name: str, into_context: bool) -> None:
        """int NAME_read_parameters(const void *ctx, T *out) and
        int NAME_write_parameters(void *ctx, const T *values): every
        tensor of the model arena, packed in order (the header lists them)."""
        b, args = self._function(name, I32, ["ctx", "values"])
        ctx, values = args["ctx"], args["values"]
        self._check_context(b, ctx)
        self._fail_if(b, self._is_null(b, values), ERROR_NULL)
        packed = 0
        for _, offset, nbytes in self.spec.tensors:
            arena = self._at(b, ctx, self.layout.context["params"] + offset)
            outside = self._at(b, values, packed)
            self._memcpy(b, *((arena, outside) if into_context else (outside, arena)), nbytes)
            packed += nbytes
        b.ret(_i32(OK))

    # -- pieces ----------------------------------------------------------
    def _function(self, name: str, ret: ir.Type, names: list[str]) -> tuple[ir.IRBuilder, dict[str, ir.Argument]]:
        """C function NAME_`name`, its builder at the entry and its arguments by name."""
        types = {"n": I64, "lr": scalar_type(self.spec.dtype)}
        fn = ir.Function(self.module, ir.FunctionType(ret, [types.get(k, PTR) for k in names]), name=self.prefix + name)
        args = dict(zip(names, fn.args, strict=True))
        for key, arg in args.items():
            arg.name = key
        return ir.IRBuilder(fn.append_basic_block("entry")), args

    def _predict_chunks(self, b: ir.IRBuilder, addresses: dict, x: ir.Value, y: ir.Value, n: ir.Value) -> None:
        """Run predict over `n` rows, `max_batch` rows a call."""
        program, layout = self.spec.predict, self.layout
        block = self._block(b, program)
        with for_range(b, i64(0), n, self.spec.max_batch, name="first") as first:
            rows = smin(b, i64(self.spec.max_batch), b.sub(n, first))
            addresses[f"in:{layout.x.name}"] = self._at(b, x, b.mul(first, i64(layout.x.row_bytes)))
            addresses[f"out:{layout.y.name}"] = self._at(b, y, b.mul(first, i64(layout.y.row_bytes)))
            self._call(b, program, block, addresses, rows)

    def _block(self, b: ir.IRBuilder, program: KernelProgram) -> ir.Value:
        """The entry's argument block, on the stack of the function's entry block."""
        with b.goto_entry_block():
            return b.alloca(ir.ArrayType(I64, len(program.symbols) + len(program.regions)), name="block")

    def _call(self, b: ir.IRBuilder, program: KernelProgram, block: ir.Value, addresses: dict, rows: ir.Value) -> None:
        """Fill `block` (sizes, then every region's address) and call the entry."""
        for i, symbol in enumerate(program.symbols):
            assert symbol == BATCH
            b.store(rows, b.gep(block, [i64(0), i64(i)]))
        for i, region in enumerate(program.regions, start=len(program.symbols)):
            b.store(b.ptrtoint(addresses[region], I64), b.gep(block, [i64(0), i64(i)]))
        b.call(self.module.get_global(program.name), [b.bitcast(block, PTR)])

    def _fixed_addresses(self, b: ir.IRBuilder, program: KernelProgram, base: ir.Value) -> dict:
        """The fixed inputs `program` reads, where `base` (image or context) holds them."""
        return {
            f"in:{a.name}": self._at(b, base, self.layout.context[f"in:{a.name}"])
            for a in program.graph.inputs
            if a.name in self.spec.fixed
        }

    def _context_addresses(self, b: ir.IRBuilder, program: KernelProgram, ctx: ir.Value) -> dict:
        """Every region of `program` that lives in the context."""
        context = self.layout.context
        addresses = self._fixed_addresses(b, program, ctx)
        for region in ("params", "state", "scratch", "threads"):
            addresses[region] = self._at(b, ctx, context[region])
        for i in range(len(program.workspace)):
            addresses[f"workspace:{i}"] = self._at(b, ctx, context[f"{program.name}:workspace:{i}"])
        if self.spec.sample_weight is not None:
            addresses[f"in:{self.spec.sample_weight}"] = self._at(b, ctx, context["ones"])
        return addresses

    def _check_indices(self, b: ir.IRBuilder, x: ir.Value, n: ir.Value) -> None:
        """Integer inputs that index tables must name their rows (the kernels
        would clamp them; the caller hears of the mistake instead)."""
        x_type = self.layout.x
        if self.spec.index_rows is not None and not x_type.dtype.is_float:
            count = b.mul(n, i64(x_type.row_values))
            self._check_range(b, x, x_type.dtype, count, self.spec.index_rows, None, ERROR_INDEX)

    def _check_range(
        self,
        b: ir.IRBuilder,
        values: ir.Value,
        dtype: DType,
        count: ir.Value,
        stop: int,
        allowed: int | None,
        error: int = ERROR_LABEL,
    ) -> None:
        """Each of `count` integers at `values` lies in [0, stop) or equals `allowed`."""
        element = memory_type(dtype)
        with for_range(b, i64(0), count, name="value") as i:
            value = b.load(b.gep(values, [i], source_etype=element), typ=element)
            value = b.sext(value, I64) if value.type != I64 else value
            good = b.icmp_unsigned("<", value, i64(stop))
            if allowed is not None:
                good = b.or_(good, b.icmp_signed("==", value, i64(allowed)))
            self._fail_if(b, b.not_(good), error)

    def _check_context(self, b: ir.IRBuilder, ctx: ir.Value) -> None:
        self._fail_if(b, self._is_null(b, ctx), ERROR_CONTEXT)
        self._fail_if(b, self._misaligned(b, ctx), ERROR_CONTEXT)
        magic = b.load(ctx, typ=I64)
        self._fail_if(b, b.icmp_unsigned("!=", magic, ir.Constant(I64, self.layout.magic)), ERROR_CONTEXT)

    def _check_not_null(self, b: ir.IRBuilder, pointers: list[ir.Value], n: ir.Value) -> None:
        """NULL arrays are an error unless there are no rows."""
        null = ir.Constant(I1, 0)
        for pointer in pointers:
            null = b.or_(null, self._is_null(b, pointer))
        self._fail_if(b, b.and_(null, b.icmp_unsigned("!=", n, i64(0))), ERROR_NULL)
        self._fail_if(b, b.icmp_signed("<", n, i64(0)), ERROR_ROWS)  # more rows than memory holds

    @staticmethod
    def _is_null(b: ir.IRBuilder, pointer: ir.Value) -> ir.Value:
        return b.icmp_unsigned("==", pointer, ir.Constant(PTR, None))

    @staticmethod
    def _misaligned(b: ir.IRBuilder, pointer: ir.Value) -> ir.Value:
        return b.icmp_unsigned("!=", b.and_(b.ptrtoint(pointer, I64), i64(63)), i64(0))

    @staticmethod
    def _fail_if(b: ir.IRBuilder, condition: ir.Value, code: int) -> None:
        with b.if_then(condition, likely=False):
            b.ret(_i32(code))

    @staticmethod
    def _at(b: ir.IRBuilder, base: ir.Value, offset: int | ir.Value) -> ir.Value:
        """`base` plus `offset` bytes."""
        return b.gep(base, [offset if isinstance(offset, ir.Value) else i64(offset)], source_etype=I8)

    def _memcpy(self, b: ir.IRBuilder, to: ir.Value, source: ir.Value, nbytes: int) -> None:
        memcpy = self.module.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
            self.module, ir.FunctionType(VOID, [PTR, PTR, I64, I1]), name="llvm.memcpy.p0.p0.i64"
        )
        b.call(memcpy, [to, source, i64(nbytes), ir.Constant(I1, 0)])


def image_symbol(spec: ExportSpec) -> str:
    return spec.name + "_image"


def compile_export(spec: ExportSpec, target: Target) -> tuple[bytes, Layout]:
    """The export's relocatable object (position-independent) and its layout."""
    text, layout = emit_export(spec, target)
    machine = object_machine(target)
    module = optimized(text, machine)
    module.link_in(llvm.parse_assembly(_image_module(spec, image(layout), target)))
    module.get_global_variable(image_symbol(spec)).linkage = "internal"
    return machine.emit_object(module), layout


def _image_module(spec: ExportSpec, data: bytes, target: Target) -> str:
    """A module defining the image global: its bytes as an LLVM string
    (hex-escaped at C speed; llvmlite's formatter takes seconds on large
    weights). Linked in after optimization, so no pass folds its values."""
    escaped = "\\" + data.hex("\\") if data else ""
    return (
        f'target triple = "{target.triple}"\n'
        f'@{image_symbol(spec)} = constant [{len(data)} x i8] c"{escaped}", align 64\n'
    )
