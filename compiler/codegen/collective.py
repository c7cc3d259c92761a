"""Collective kernels: a value summed over the processes of a distributed step.

The kernel copies its input into its result (a loop kernel: the op's
`emit` is the identity), then, unless `ember_active_groups` is 0, hands the
result to the runtime, which sums it over the active process group in
place (ir/collectives.py):

    i64 ember_active_groups;                      // groups active in the process
    void (*ember_allreduce_hook)(void *, i64, i32);   // set by the runtime
    void ember_allreduce_sum(void *data, i64 count, i32 dtype)
        // calls the hook; dtype: the index of the data's type in plan.ALLREDUCE_DTYPES

`emit_group_support` defines these three in the thread pool's module,
which the runtime loads first (runtime/threads.py, runtime/collectives.py);
an exported object, which runs as one process, holds its own copy with no
group ever active (compiler/aot.py). The call is made from the step's own
thread, between kernels, never from a task of the thread pool."""

from __future__ import annotations

import llvmlite.ir as ir

from ..plan import ACTIVE_GROUPS, ALLREDUCE_DTYPES, ALLREDUCE_HOOK, ALLREDUCE_SUM
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


def emit_group_support(module: ir.Module, internal: bool = False) -> None:
    """Define `ACTIVE_GROUPS` (0), `ALLREDUCE_HOOK` (null) and `ALLREDUCE_SUM`
    (which calls the hook when it is set) in `module`, with `internal`
    linkage for an object that keeps them to itself."""
    groups = module.globals.get(ACTIVE_GROUPS) or ir.GlobalVariable(module, I64, ACTIVE_GROUPS)
    groups.initializer = i64(0)
    hook = ir.GlobalVariable(module, PTR, ALLREDUCE_HOOK)
    hook.initializer = ir.Constant(PTR, None)
    fn = declare(module, ALLREDUCE_SUM, VOID, [PTR, I64, I32])
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    callback = b.load(hook, typ=ir.PointerType(fn.function_type))
    with b.if_then(b.icmp_unsigned("!=", callback, ir.Constant(callback.type, None))):
        b.call(callback, fn.args)
    b.ret_void()
    if internal:
        for value in (groups, hook, fn):
            value.linkage = "internal"
