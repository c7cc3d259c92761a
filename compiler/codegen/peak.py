"""A kernel that does nothing but fused multiply-adds, to measure the
core's peak: independent accumulator chains, enough of them to cover the
FMA latency on every FMA unit, and no loads or stores in the loop.

    void ember_fma_peak(i64 iterations, ptr out)
        // iterations x chains(target) vector FMAs; their sum goes to *out (so the loop stays)
    i64 ember_cycle_counter()   // the CPU's cycle counter (rdtsc), for timing kernels
    void ember_copy(ptr dst, ptr src, i64 vectors, i64 repeats)
        // copy `vectors` vectors from src to dst, `repeats` times: memory bandwidth
        // at a working set of any size, without a call per copy
"""

from __future__ import annotations

import llvmlite.ir as ir

from ...ir import DType
from .irutil import I64, PTR, VOID, call_intrinsic, constant, declare, i64, vector_of
from .target import Target

PEAK_FUNCTION = "ember_fma_peak"
COUNTER_FUNCTION = "ember_cycle_counter"
COPY_FUNCTION = "ember_copy"


def chains(target: Target) -> int:
    """Accumulator chains: the vector registers but four (for the two
    factors and the loop): 12 with AVX2's 16 registers, 28 with AVX-512's
    32. Zen 3 and Zen 4 issue two FMAs per cycle with a 4-cycle latency,
    so 8 chains keep both units busy."""
    return (32 if target.vector_bits >= 512 else 16) - 4


def emit_peak_module(target: Target, dtype: DType = DType.float32) -> str:
    """The LLVM IR text of the peak kernel for `target` and `dtype`."""
    module = ir.Module(name="ember_peak")
    module.triple = target.triple
    element = ir.FloatType() if dtype is DType.float32 else ir.DoubleType()
    vector = vector_of(element, target.lanes(dtype))
    fn = ir.Function(module, ir.FunctionType(VOID, [I64, PTR]), name=PEAK_FUNCTION)
    iterations, out = fn.args
    entry, loop, done = (fn.append_basic_block(name) for name in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.branch(loop)
    b.position_at_end(loop)
    count = b.phi(I64)
    # factors near 1 keep the sums finite for any number of iterations
    a, c = constant(vector, 0.999999), constant(vector, 1e-6)
    accumulators = [b.phi(vector) for _ in range(chains(target))]
    updated = [call_intrinsic(b, "fma", vector, [acc, a, c]) for acc in accumulators]
    following = b.add(count, i64(1))
    b.cbranch(b.icmp_signed("<", following, iterations), loop, done)
    count.add_incoming(i64(0), entry)
    count.add_incoming(following, loop)
    for i, (acc, new) in enumerate(zip(accumulators, updated, strict=True)):
        acc.add_incoming(constant(vector, float(i)), entry)
        acc.add_incoming(new, loop)
    b.position_at_end(done)
    total = updated[0]
    for value in updated[1:]:
        total = b.fadd(total, value)
    b.store(total, out, align=4)  # the caller's buffer need not be vector-aligned
    b.ret_void()
    counter = ir.Function(module, ir.FunctionType(I64, []), name=COUNTER_FUNCTION)
    b = ir.IRBuilder(counter.append_basic_block("entry"))
    b.ret(b.call(declare(module, "llvm.readcyclecounter", I64, []), []))
    _emit_copy(module, vector)
    return str(module)


def _emit_copy(module: ir.Module, vector: ir.Type) -> None:
    """`ember_copy`: two nested counted loops of vector loads and stores."""
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64, I64]), name=COPY_FUNCTION)
    dst, src, vectors, repeats = fn.args
    entry, outer, inner, step, done = (
        fn.append_basic_block(name) for name in ("entry", "outer", "inner", "step", "done")
    )
    b = ir.IRBuilder(entry)
    b.branch(outer)
    b.position_at_end(outer)
    round_ = b.phi(I64)
    b.branch(inner)
    b.position_at_end(inner)
    i = b.phi(I64)
    value = b.load(b.gep(src, [i], source_etype=vector), typ=vector, align=64)
    b.store(value, b.gep(dst, [i], source_etype=vector), align=64)
    following = b.add(i, i64(1))
    b.cbranch(b.icmp_signed("<", following, vectors), inner, step)
    i.add_incoming(i64(0), outer)
    i.add_incoming(following, inner)
    b.position_at_end(step)
    next_round = b.add(round_, i64(1))
    b.cbranch(b.icmp_signed("<", next_round, repeats), outer, done)
    round_.add_incoming(i64(0), entry)
    round_.add_incoming(next_round, step)
    b.position_at_end(done)
    b.ret_void()
