"""What each kernel of a program does, in numbers: floating-point
operations and bytes moved at given sizes, and a short description. A
profile (ember/profile.py) divides them by the kernel's measured time.

Counting rules, as a roofline needs them (not as a cycle model): a matmul
of M x K by K x N is 2*M*N*K operations; every other member counts one
operation per element it computes (an exp counts as one, as a multiply
does); a reduction one per element it reads. Bytes are the stored tensors
the kernel reads and writes, each once, whole."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..ir import Node, Value
from .fusion import Kernel, node_class
from .plan import KernelProgram, kernel_reads


def _size(value: Value, sizes: Mapping[str, int]) -> int:
    return math.prod(value.type.concrete_shape(sizes))


def matmul_dims(node: Node, sizes: Mapping[str, int]) -> tuple[int, int, int]:
    """(M, N, K) of a matmul node at `sizes`."""
    m, n = node.output.type.concrete_shape(sizes)
    return m, n, _size(node.inputs[0], sizes) // max(m, 1)


def kernel_flops(kernel: Kernel, sizes: Mapping[str, int]) -> int:
    """The operations `kernel` performs at `sizes` (see the module's rules)."""
    flops = 0
    for node in kernel.nodes:
        kind = node_class(node)
        if kind == "matmul":
            m, n, k = matmul_dims(node, sizes)
            flops += 2 * m * n * k
        elif kind == "reduce":
            flops += _size(node.inputs[0], sizes)
        elif kind == "elementwise":
            flops += _size(node.output, sizes)
    return flops


def kernel_bytes(program: KernelProgram, kernel: Kernel, sizes: Mapping[str, int]) -> int:
    """The bytes of the stored tensors `kernel` reads and writes at `sizes`."""
    reads = kernel_reads(kernel, program.inline, program.is_stored, program.recomputed)
    touched = dict.fromkeys([*reads, *kernel.stores])
    return sum(_size(v, sizes) * v.type.dtype.itemsize for v in touched)


def describe(kernel: Kernel, sizes: Mapping[str, int]) -> str:
    """`matmul 128x512x784 +add,relu`, `rows 128x10 exp,log,...`: the kernel's
    kind at `sizes` and the ops it computes besides."""
    mm = kernel.matmul
    if mm is not None:
        head = "matmul " + "x".join(map(str, matmul_dims(mm, sizes)))
    elif kernel.copy:
        return f"copy {_size(kernel.copy[0], sizes)}"
    else:
        domain = [d if isinstance(d, int) else sizes[d] for d in kernel.domain]
        head = f"{kernel.kind} {'x'.join(map(str, domain)) or 'scalar'}"
    ops = [n.op.name for n in kernel.nodes if n is not mm and node_class(n) != "layout"]
    ops = list(dict.fromkeys(ops))
    return head + (f" {'+' if mm is not None else ''}{','.join(ops)}" if ops else "")
