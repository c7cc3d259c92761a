"""Code generation shared by every kernel: its LLVM function, addressing of
the tensors it reads and writes, and evaluation of its members at one point.

A kernel function takes one argument, the program's argument block: an
array of 8-byte slots holding the sizes of the shape symbols (such as B)
followed by the base address of each memory region (inputs, params, state,
outputs, workspace). A tensor's address is its region's base plus its
offset in the buffer plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import llvmlite.ir as ir

from ...ir import DType, Node, OpDef, Value
from ..fusion import Kernel, node_class
from ..plan import KernelProgram, operand_view
from ..symbolic import Poly, product
from .irutil import (
    I1,
    I8,
    I32,
    I64,
    PTR,
    VOID,
    constant,
    declare,
    i64,
    intrinsic_suffix,
    memory_type,
    scalar_type,
    splat,
    vector_of,
)
from .shared_functions import SharedFunctions
from .target import Target
from .vecmath import Math, Val


@dataclass
class Access:
    """A stored tensor read or written at `offset + sum(index[k] * strides[k])`
    over the kernel's loop dimensions."""

    base: Value
    strides: list[Poly]
    offset: Poly = field(default_factory=Poly)


@dataclass
class Point:
    """Where the kernel body runs: one i64 index per loop dimension (for the
    innermost, the index of the first lane) and the lanes that are on
    (None when all are)."""

    indices: list[ir.Value]
    mask: ir.Value | None = None


def kernel_dtype(kernel: Kernel) -> DType:
    """The float type that sets a kernel's vector width."""
    values = [v for n in kernel.nodes for v in (n.output, *n.inputs)] + list(kernel.copy or ())
    return next((v.type.dtype for v in values if v.type.dtype.is_float), DType.float32)


def _alignment(dtype: DType) -> int:
    return dtype.itemsize


Passed = Node | Value | Poly
"""What a caller computes for a `take_from_caller` callee: an inline scalar,
the address of a stored tensor, a polynomial."""


class KernelEmitter:
    """Builds the LLVM function of one kernel; loops.py and gemm.py drive it."""

    def __init__(
        self,
        program: KernelProgram,
        kernel: Kernel,
        module: ir.Module,
        target: Target,
        part: str = "",
        extra_args: tuple[ir.Type, ...] = (),
        library: SharedFunctions | None = None,
    ) -> None:
        """The function `{program}.{kernel}{part}(args, *extra_args)`: the
        kernel itself, or with a `part` suffix a helper of it (a matmul's
        task or epilogue) that addresses memory the same way; it calls
        `library`'s shared functions (by default, a library of its own)."""
        self.program = program
        self.kernel = kernel
        self.target = target
        self.library = library or SharedFunctions(module)
        self.fn = ir.Function(
            module, ir.FunctionType(VOID, [PTR, *extra_args]), name=f"{program.name}.{kernel.name}{part}"
        )
        self.fn.linkage = "internal"
        self.fn.attributes.add("noinline")  # one function per kernel, as in the kernels dump
        self.fn.args[0].add_attribute("noalias")
        # Three builders, each appending to its own block (llvmlite builders
        # insert by index, so two must never share a block): stack slots,
        # values computed once, and the loops.
        self.allocas = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self.prologue = ir.IRBuilder(self.fn.append_basic_block("prologue"))
        self._body = self.fn.append_basic_block("body")
        self.b = ir.IRBuilder(self._body)
        self.dtype = kernel_dtype(kernel)
        self.lanes = target.lanes(self.dtype)
        self._symbols: dict[str, ir.Value] = {}
        self._regions: dict[str, ir.Value] = {}
        self._scalars: dict[Node, Val] = {}
        self._input_scalars: dict[Value, Val] = {}
        self.passed: list[Passed] | None = None  # see `take_from_caller`
        self._passed_polys: dict[Poly, ir.Value] = {}
        self._pointers: dict[Value, ir.Value] = {}

    def finish(self) -> ir.Function:
        self.allocas.branch(self.prologue.block)
        self.prologue.branch(self._body)
        self.b.ret_void()
        return self.fn

    def stack_slot(self, type: ir.Type) -> ir.Value:
        """A stack slot in the entry block, which LLVM promotes to a register."""
        return self.allocas.alloca(type)

    def local_array(self, value: Value, count: int) -> None:
        """Hold `value` in a stack array of `count` elements (a row kernel's
        row buffer) instead of a buffer of the plan: accesses to it address the array."""
        array = self.allocas.alloca(ir.ArrayType(memory_type(value.type.dtype), count))
        array.type = PTR  # llvmlite types an alloca by its contents; LLVM's pointers are opaque
        self._pointers[value] = array

    # -- values computed once, at the top of the function -------------
    def _in_prologue(self, make: Callable[[ir.IRBuilder], ir.Value]) -> ir.Value:
        return make(self.prologue)

    def _slot(self, b: ir.IRBuilder, index: int, type: ir.Type, name: str) -> ir.Value:
        return b.load(b.gep(self.fn.args[0], [i64(index)], source_etype=I64), typ=type, name=name)

    def symbol(self, name: str) -> ir.Value:
        if name not in self._symbols:
            index = self.program.symbols.index(name)
            self._symbols[name] = self._in_prologue(lambda b: self._slot(b, index, I64, name))
        return self._symbols[name]

    def region(self, name: str) -> ir.Value:
        if name not in self._regions:
            index = len(self.program.symbols) + self.program.regions.index(name)
            self._regions[name] = self._in_prologue(lambda b: self._slot(b, index, PTR, name.replace(":", ".")))
        return self._regions[name]

    def poly(self, p: Poly, b: ir.IRBuilder | None = None) -> ir.Value:
        """An i64 holding `p` at the runtime sizes of its symbols."""
        if self.passed is not None and p.terms and p != Poly.of(1):
            if p not in self._passed_polys:
                self._passed_polys[p] = self.prologue.load(self._passed_slot(p), typ=I64)
            return self._passed_polys[p]
        b = b or self.b
        total: ir.Value | None = None
        for monomial, coefficient in p.terms:
            term: ir.Value = i64(coefficient)
            for symbol in monomial:
                term = b.mul(term, self.symbol(symbol))
            total = term if total is None else b.add(total, term)
        return total if total is not None else i64(0)

    def pointer(self, value: Value) -> ir.Value:
        """The address of the first element of stored tensor `value`."""
        if value not in self._pointers and self.passed is not None:
            self._pointers[value] = self.prologue.load(self._passed_slot(value), typ=PTR)
        if value not in self._pointers:
            buffer = self.program.buffers[value]
            region = self.region(buffer.region)
            self._pointers[value] = self._in_prologue(
                lambda b: b.gep(region, [self.poly(buffer.offset, b)], source_etype=I8)
            )
        return self._pointers[value]

    def take_from_caller(self) -> None:
        """Take the inline scalars, the addresses of stored tensors, and the
        sizes, strides and offsets (but 0 and 1) from the caller instead of
        computing them: the function's last argument points to them, 8 bytes
        apart, in the order of `passed` (filled as the body asks for them).
        For a function called once per tile, such as a matmul's
        microkernel, whose caller computes them once (a bias correction's
        pow was measured at 2% of an MNIST-sized Adam step, computed again
        for every tile); and holding no address or size of its own, the
        function can be shared by kernels that differ only in those
        (SharedFunctions.shared)."""
        self.passed = []

    def store_passed(self, items: list[Passed]) -> ir.Value:
        """A stack array holding, 8 bytes apart, the values of inline nodes,
        the addresses of stored tensors and the values of polynomials in
        `items`, computed in this function's prologue: what a
        `take_from_caller` callee reads."""
        array = self.allocas.alloca(ir.ArrayType(I64, max(len(items), 1)))
        array.type = PTR  # llvmlite types an alloca by its contents; LLVM's pointers are opaque
        for i, item in enumerate(items):
            if isinstance(item, Node):
                value = self.inline_value(item)
                raw = self.prologue.zext(value.ir, I8) if value.dtype is DType.bool else value.ir
            elif isinstance(item, Poly):
                raw = self.poly(item, self.prologue)
            else:
                raw = self.pointer(item)
            self.prologue.store(raw, self.prologue.gep(array, [i64(8 * i)], source_etype=I8))
        return array

    def _passed_slot(self, item: Passed) -> ir.Value:
        """The address of the caller's slot for `item`, the next one."""
        address = self.prologue.gep(self.fn.args[-1], [i64(8 * len(self.passed))], source_etype=I8)
        self.passed.append(item)
        return address

    def _passed_scalar(self, node: Node) -> Val:
        dtype = node.output.type.dtype
        raw = self.prologue.load(self._passed_slot(node), typ=memory_type(dtype))
        return Val(self.prologue.icmp_unsigned("!=", raw, ir.Constant(I8, 0)) if dtype is DType.bool else raw, dtype)

    def inline_value(self, node: Node) -> Val:
        """A scalar node of the program's inline set, computed in the prologue
        (or, after `take_from_caller`, given by the caller)."""
        if node not in self._scalars and self.passed is not None:
            self._scalars[node] = self._passed_scalar(node)
        if node not in self._scalars:
            b = self.prologue
            m = Math(b, 1)
            if node.op.counts is not None:
                count = self.poly(product(node.op.counts(node.inputs[0].type.shape, **node.attrs)), b)
                value = m.cast(Val(count, DType.int64), node.output.type.dtype)
            else:
                operands = [self._scalar_operand(v, b) for v in node.inputs]
                if node.op.name in OUTLINED_SCALARS and not node.attrs:
                    fn = scalar_function(self.library, node.op, [v.dtype for v in operands], node.output.type.dtype)
                    value = Val(b.call(fn, [v.ir for v in operands]), node.output.type.dtype)
                else:
                    value = node.op.emit(m, *operands, **node.attrs)
            self._scalars[node] = value
        return self._scalars[node]

    def input_scalar(self, value: Value) -> Val:
        """A scalar input (a hyperparameter), loaded once in the prologue: no
        kernel writes an input, but LLVM cannot know that the stores of a
        loop miss it, and would load it again for every vector."""
        if value not in self._input_scalars:
            self._input_scalars[value] = self._scalar_operand(value)
        return self._input_scalars[value]

    def _scalar_operand(self, value: Value, b: ir.IRBuilder | None = None) -> Val:
        if value.node in self.program.inline:
            return self.inline_value(value.node)
        b = b or self.prologue
        dtype = value.type.dtype
        raw = b.load(self.pointer(value), typ=memory_type(dtype))
        return Val(b.icmp_unsigned("!=", raw, ir.Constant(I8, 0)) if dtype is DType.bool else raw, dtype)

    # -- memory ---------------------------------------------------------
    def address(self, access: Access, point: Point) -> ir.Value:
        """Address of the element `access` touches at `point` (the first lane)."""
        index = self.poly(access.offset)
        for i, stride in zip(point.indices, access.strides, strict=True):
            if stride == Poly.of(1):
                index = self.b.add(index, i)
            elif stride != Poly():
                index = self.b.add(index, self.b.mul(i, self.poly(stride)))
        return self.b.gep(self.pointer(access.base), [index], source_etype=memory_type(access.base.type.dtype))

    def load(self, access: Access, point: Point, lanes: int) -> Val:
        """The elements `access` reads at `point`: a vector load where the
        innermost stride is 1, one element splatted where it is 0, a gather otherwise."""
        # An inline scalar is computed here, except by a copy kernel: it runs last and
        # moves the value its writer stored, after params and state are updated in place.
        if access.base.node in self.program.inline and not self.kernel.copy:
            return Math(self.b, lanes).widen(self.inline_value(access.base.node))
        if access.base.role == "input" and access.base.type.rank == 0:
            return Math(self.b, lanes).widen(self.input_scalar(access.base))
        dtype = access.base.type.dtype
        inner = access.strides[-1] if access.strides else Poly()
        mtype = memory_type(dtype)
        align = constant(I32, _alignment(dtype))
        if lanes == 1 or inner == Poly():
            raw = splat(self.b, self.b.load(self.address(access, point), typ=mtype), lanes)
        else:
            vtype = vector_of(mtype, lanes)
            start = self.address(access, point)
            if inner == Poly.of(1) and point.mask is None:
                raw = self.b.load(start, typ=vtype, align=_alignment(dtype))
            elif inner == Poly.of(1):
                name = f"llvm.masked.load.{intrinsic_suffix(vtype)}.p0"
                fn = declare(self.b.module, name, vtype, [PTR, I32, point.mask.type, vtype])
                raw = self.b.call(fn, [start, align, point.mask, constant(vtype, 0)])
            else:
                steps = ir.Constant(vector_of(I64, lanes), list(range(lanes)))
                offsets = self.b.mul(steps, splat(self.b, self.poly(inner), lanes))
                pointers = self.b.gep(start, [offsets], source_etype=mtype)
                pointers.type = ir.VectorType(PTR, lanes)  # llvmlite types a vector GEP as one pointer
                mask = point.mask if point.mask is not None else constant(vector_of(I1, lanes), 1)
                name = f"llvm.masked.gather.{intrinsic_suffix(vtype)}.v{lanes}p0"
                fn = declare(self.b.module, name, vtype, [pointers.type, I32, mask.type, vtype])
                raw = self.b.call(fn, [pointers, align, mask, constant(vtype, 0)])
        if dtype is DType.bool:
            return Val(self.b.icmp_unsigned("!=", raw, constant(raw.type, 0)), dtype)
        return Val(raw, dtype)

    def store(self, access: Access, point: Point, value: Val, lanes: int) -> None:
        """Write `value` where `access` points: a vector store where the
        innermost stride is 1, a scatter otherwise (a pad's strided part)."""
        dtype = access.base.type.dtype
        data = self.b.zext(value.ir, vector_of(I8, lanes)) if dtype is DType.bool else value.ir
        address = self.address(access, point)
        inner = access.strides[-1] if access.strides else Poly.of(1)
        if lanes > 1 and inner != Poly.of(1):
            self._scatter(data, address, inner, point.mask, _alignment(dtype), lanes)
            return
        if point.mask is None or lanes == 1:
            self.b.store(data, address, align=_alignment(dtype))
            return
        name = f"llvm.masked.store.{intrinsic_suffix(data.type)}.p0"
        fn = declare(self.b.module, name, VOID, [data.type, PTR, I32, point.mask.type])
        self.b.call(fn, [data, address, constant(I32, _alignment(dtype)), point.mask])

    def _scatter(self, data: ir.Value, start: ir.Value, stride: Poly, mask, align: int, lanes: int) -> None:
        """Store the lanes of `data` at `start + lane * stride` elements."""
        steps = ir.Constant(vector_of(I64, lanes), list(range(lanes)))
        offsets = self.b.mul(steps, splat(self.b, self.poly(stride), lanes))
        pointers = self.b.gep(start, [offsets], source_etype=data.type.element)
        pointers.type = ir.VectorType(PTR, lanes)  # llvmlite types a vector GEP as one pointer
        mask = mask if mask is not None else constant(vector_of(I1, lanes), 1)
        name = f"llvm.masked.scatter.{intrinsic_suffix(data.type)}.v{lanes}p0"
        fn = declare(self.b.module, name, VOID, [data.type, pointers.type, I32, mask.type])
        self.b.call(fn, [data, pointers, constant(I32, align), mask])

    # -- members ----------------------------------------------------------
    def operand_access(self, node: Node, index: int) -> Access:
        """How member `node` reads its input `index` from memory, over the kernel domain."""
        view = operand_view(node, index, self.kernel.domain, self.program.is_stored)
        return Access(view.base, list(view.strides), view.offset)

    def copy_access(self, node: Node) -> Access:
        """How a stored layout member reads the tensor it is a view of."""
        return self.operand_access(node, 0)

    def evaluate(
        self,
        point: Point,
        lanes: int,
        access: Callable[[Node, int], Access],
        given: dict[Value, Val] | None = None,
        index: Callable[[int, DType], Val] | None = None,
        flat_index: Callable[[], Val] | None = None,
    ) -> dict[Value, Val]:
        """The elementwise members' values at `point`. `access(node, i)` says
        where to load an input from memory; `given` holds values computed
        elsewhere (a matmul's tile); `index(axis, dtype)` is the current index
        along a domain axis (for one_hot), `flat_index()` the row-major
        position in the domain (for random numbers)."""
        m = Math(self.b, lanes, index, flat_index)
        values: dict[Value, Val] = dict(given or {})
        for node in self.kernel.nodes:
            if node.output in values or node_class(node) in ("reduce", "matmul"):
                continue
            if node in self.program.inline:
                values[node.output] = m.widen(self.inline_value(node))
            elif node_class(node) == "layout":
                values[node.output] = self.load(access(node, -1), point, lanes)
            elif node.op.rows == "gather":
                values[node.output] = self._gather(node, point, lanes, values, access, m, index)
            else:
                operands = [
                    self.operand(v, node, i, point, lanes, values, access, m) for i, v in enumerate(node.inputs)
                ]
                values[node.output] = node.op.emit(m, *operands, **node.attrs)
        return values

    def _gather(self, node: Node, point: Point, lanes: int, values, access, m: Math, index) -> Val:
        """A gather's value: the current columns of the table row its index names."""
        indices = self.operand(node.inputs[1], node, 1, point, lanes, values, access, m)
        table = access(node, 0)
        rows = node.inputs[0].type.shape[0]
        row = lambda at: self.load(table, self.row_point(at, rows, point, index), lanes)
        return node.op.emit(m, row, indices, **node.attrs)

    def row_point(self, indices: Val, rows: int, point: Point, index) -> Point:
        """The (row, column) of a table [rows, columns] that the current lanes
        touch: every lane of a vector lies in one row (the columns axis is the
        innermost loop), which is the index clamped into [0, rows), so that no
        index reaches outside the table."""
        b = self.b
        row = _first_lane(b, Math(b, 1).cast(Val(_first_lane(b, indices.ir), indices.dtype), DType.int64).ir)
        row = b.select(b.icmp_signed("<", row, i64(0)), i64(0), row)
        row = b.select(b.icmp_signed(">", row, i64(rows - 1)), i64(rows - 1), row)
        column = _first_lane(b, index(-1, DType.int64).ir)
        return Point([row, column], point.mask)

    def operand(self, value: Value, node: Node, i: int, point: Point, lanes: int, values, access, m: Math) -> Val:
        if value in values:
            return values[value]
        if value.node in self.program.inline:
            return m.widen(self.inline_value(value.node))
        if value.node in self.program.recomputed:
            return self.recompute(value, m, values)
        return self.load(access(node, i), point, lanes)

    def recompute(self, value: Value, m: Math, values: dict[Value, Val]) -> Val:
        """A recomputed value at the current element, from its scalar inputs
        and the element index (kept in `values` for the other readers)."""
        if value not in values:
            operands = [
                self.recompute(v, m, values) if v.node in self.program.recomputed else m.widen(self._scalar_operand(v))
                for v in value.node.inputs
            ]
            values[value] = value.node.op.emit(m, *operands, **value.node.attrs)
        return values[value]

    def flat_index(self, point: Point, strides: list[Poly], lanes: int) -> Val:
        """The row-major position of `point`'s lanes, for loop dimensions that
        are `strides` elements apart (int64)."""
        m = Math(self.b, lanes)
        total = i64(0)
        for index, stride in zip(point.indices, strides, strict=True):
            total = self.b.add(total, self.b.mul(index, self.poly(stride)))
        flat = m.widen(Val(total, DType.int64))
        if lanes == 1:
            return flat
        return m.add(flat, Val(ir.Constant(vector_of(I64, lanes), list(range(lanes))), DType.int64))


OUTLINED_SCALARS = frozenset({"pow", "exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "erf", "sigmoid"})
"""Ops whose scalar code is long (range reduction, polynomials, special
cases). A kernel computes its inline scalars once per call, so for these
it calls a function of the module (scalar_function) instead of holding
their code: Adam's bias corrections are two pows in each kernel that
updates a parameter."""


def scalar_function(library: SharedFunctions, op: OpDef, dtypes: list[DType], result: DType) -> ir.Function:
    """`ember.math.OP.DTYPES`: op `op` (without attributes) on scalars of
    `dtypes`, in `library`: its text depends on its name alone, so
    compiler/shared_code.py compiles it once per machine."""

    def build(b: ir.IRBuilder, *args: ir.Argument) -> ir.Value:
        return op.emit(Math(b, 1), *(Val(arg, d) for arg, d in zip(args, dtypes, strict=True))).ir

    name = ".".join(["ember.math", op.name, *(str(d) for d in dtypes)])
    return library.function(name, [scalar_type(d) for d in dtypes], build, scalar_type(result))


def _first_lane(b: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """Lane 0 of a vector; a scalar as it is."""
    return b.extract_element(value, constant(I32, 0)) if isinstance(value.type, ir.VectorType) else value
