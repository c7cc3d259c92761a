"""Small helpers over llvmlite's IR builder: types, constants, intrinsics and loops."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import llvmlite.ir as ir

from ...ir import DType

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

_SCALAR = {
    DType.float32: ir.FloatType(),
    DType.float64: ir.DoubleType(),
    DType.int32: I32,
    DType.int64: I64,
    DType.bool: I1,
}


def scalar_type(dtype: DType) -> ir.Type:
    """The register type of one element (bool is i1 in registers)."""
    return _SCALAR[dtype]


def memory_type(dtype: DType) -> ir.Type:
    """The in-memory type of one element (bool is one byte, as in NumPy)."""
    return I8 if dtype is DType.bool else _SCALAR[dtype]


def vector_of(element: ir.Type, lanes: int) -> ir.Type:
    return ir.VectorType(element, lanes) if lanes > 1 else element


def constant(type: ir.Type, value) -> ir.Constant:
    """A scalar constant, or the same value in every lane of a vector type."""
    # a vector type given one value repeats one element constant, whose text
    # llvmlite formats once (a list of values made and formatted one per lane)
    if isinstance(value, list):
        return ir.Constant(type, value)
    return _shared_constant(type, repr(value), value)


@functools.lru_cache(maxsize=4096)
def _shared_constant(type: ir.Type, text: str, value) -> ir.Constant:
    """One object per type and value (`text` keeps -0.0 apart from 0.0, which
    compare equal): a module uses the same few constants thousands of times,
    and llvmlite takes ~10 us to make one and caches its text on the object
    (measured: a third of a training step's code generation went to making
    constants)."""
    return ir.Constant(type, value)


def i64(value: int) -> ir.Constant:
    return constant(I64, value)


def intrinsic_suffix(type: ir.Type) -> str:
    """LLVM's overload suffix: `f32`, `v8f32`, `i64`, `v4i64`..."""
    if isinstance(type, ir.VectorType):
        return f"v{type.count}{intrinsic_suffix(type.element)}"
    if isinstance(type, ir.FloatType):
        return "f32"
    if isinstance(type, ir.DoubleType):
        return "f64"
    return f"i{type.width}"


def declare(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """A function (or intrinsic, declared by its full overloaded name) in `module`."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ret, args), name)


def call_intrinsic(b: ir.IRBuilder, name: str, ret: ir.Type, args: list) -> ir.Value:
    """Call `llvm.NAME.SUFFIX` overloaded on the type of the first argument."""
    full = f"llvm.{name}.{intrinsic_suffix(args[0].type)}"
    return b.call(declare(b.module, full, ret, [a.type for a in args]), args)


def splat(b: ir.IRBuilder, value: ir.Value, lanes: int) -> ir.Value:
    """`value` broadcast to every lane (returned as is when lanes == 1)."""
    if lanes == 1 or isinstance(value.type, ir.VectorType):
        return value
    vtype = ir.VectorType(value.type, lanes)
    undefined = constant(vtype, ir.Undefined)
    one = b.insert_element(undefined, value, constant(I32, 0))
    return b.shuffle_vector(one, undefined, constant(ir.VectorType(I32, lanes), 0))


@contextmanager
def for_range(
    b: ir.IRBuilder, start: ir.Value, stop: ir.Value, step: int | ir.Value = 1, name: str = "i"
) -> Iterator[ir.Value]:
    """`for (i = start; i < stop; i += step)`; yields `i` (i64) inside the body."""
    before = b.block
    head = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    index = b.phi(I64, name=name)
    index.add_incoming(start, before)
    b.cbranch(b.icmp_signed("<", index, stop), body, done)
    b.position_at_end(body)
    yield index
    index.add_incoming(b.add(index, i64(step) if isinstance(step, int) else step, name=f"{name}.next"), b.block)
    b.branch(head)
    b.position_at_end(done)


def smin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """The smaller of two signed integers."""
    return b.select(b.icmp_signed("<", x, y), x, y)


def smax(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """The larger of two signed integers."""
    return b.select(b.icmp_signed("<", x, y), y, x)


def lane_mask(b: ir.IRBuilder, remaining: ir.Value, lanes: int) -> ir.Value:
    """`<lanes x i1>`: lane k is on when k < remaining."""
    if lanes == 1:  # a scalar loop (a domain of size-1 dims): one i1, not a <1 x i1> vector
        return b.icmp_signed("<", i64(0), remaining)
    iota = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
    return b.icmp_signed("<", iota, splat(b, remaining, lanes))


def rename(module: ir.Module, fn: ir.Function, name: str) -> None:
    """Give `fn` of `module` another name. llvmlite caches a value's text and
    the text of a reference to it once printed: both caches go (anything
    else that printed a reference to `fn` would keep the old name)."""
    module.globals[name] = module.globals.pop(fn.name)
    fn.name = name
    for cache in ("_StrCaching__cached_str", "_StringReferenceCaching__cached_refstr"):
        fn.__dict__.pop(cache, None)
