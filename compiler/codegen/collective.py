"""Collective kernels: a value summed over the processes of a distributed step.

The kernel copies its input into its result (a loop kernel: the op's
`emit` is the identity), then, unless the runtime's `ember_active_groups`
is 0, hands the result to the runtime, which sums it over the active
process group in place (ir/collectives.py):

    extern i64 ember_active_groups;
    void ember_allreduce_sum(void *data, i64 count, i32 dtype)
        // dtype: the index of the data's type in plan.ALLREDUCE_DTYPES

The runtime defines both (runtime/collectives.py); an exported object,
which runs as one process, defines the count as 0 and the function as a
no-op (compiler/aot.py). The call is made from the step's own thread,
between kernels, never from a task of the thread pool."""

from __future__ import annotations

import llvmlite.ir as ir

from ..plan import ACTIVE_GROUPS, ALLREDUCE_DTYPES, ALLREDUCE_SUM
from ..symbolic import product
from .irutil import I32, I64, PTR, VOID, declare, i64
from .kernel import KernelEmitter
from .loops import emit_loop_kernel


def emit_collective_kernel(emitter: KernelEmitter, copy: KernelEmitter) -> ir.Function:
    """The kernel's function (`emitter`): the copy (`copy`, a helper function
    of the same kernel), then the call that sums the copy over the group."""
    copy_fn = emit_loop_kernel(copy)
    (node,) = emitter.kernel.nodes
    result = node.output
    b = emitter.b
    b.call(copy_fn, [emitter.fn.args[0]])
    module = emitter.fn.module
    groups = module.globals.get(ACTIVE_GROUPS) or ir.GlobalVariable(module, I64, ACTIVE_GROUPS)
    with b.if_then(b.icmp_signed("!=", b.load(groups, typ=I64), i64(0)), likely=False):
        reduce = declare(module, ALLREDUCE_SUM, VOID, [PTR, I64, I32])
        count = emitter.poly(product(result.type.shape))
        dtype = ir.Constant(I32, ALLREDUCE_DTYPES.index(result.type.dtype))
        b.call(reduce, [emitter.pointer(result), count, dtype])
    return emitter.finish()


def define_job_of_one(module: ir.Module) -> None:
    """The runtime's side of collective kernels as a job of one has it, in
    `module` (an exported object, which runs without a process group): no
    group is ever active, and the data is already the sum."""
    groups = module.globals.get(ACTIVE_GROUPS)
    if groups is not None:
        groups.initializer = i64(0)
        groups.linkage = "internal"
    fn = module.globals.get(ALLREDUCE_SUM)
    if fn is not None:
        fn.linkage = "internal"
        ir.IRBuilder(fn.append_basic_block("entry")).ret_void()
