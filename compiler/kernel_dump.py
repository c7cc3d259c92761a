"""Readable dumps of the `fused` and `kernels` stages.

`fused` lists each kernel with the IR lines of its members. `kernels`
shows the program the code generator sees: the kernels in execution order,
each as a loop nest in pseudo-C over its domain, and the buffer plan (where
every tensor lives and which kernels touch it)."""

from __future__ import annotations

from ..ir import Node, Value
from ..ir.printer import Namer, format_attrs, format_node
from .fusion import FusedGraph, Kernel, node_class
from .memory import ALIGNMENT
from .plan import KernelProgram, operand_view
from .symbolic import Poly, row_major_strides
from .views import View, layout_view

_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def format_fused(fused: FusedGraph, name: str) -> str:
    """Each kernel of `fused` and the IR of its members."""
    namer = Namer(fused.graph)
    lines = [f"fused {name}: {len(fused.kernels)} kernels from {len(fused.graph.nodes)} nodes"]
    for kernel in fused.kernels:
        stores = ", ".join(namer(v) for v in kernel.stores)
        lines.append(f"kernel {kernel.name}: {kernel.kind} over [{_dims(kernel.domain)}] -> {stores or 'nothing'}")
        lines += [f"  {format_node(n, namer)}" for n in kernel.nodes]
    inline = [n for n in fused.graph.nodes if n in fused.inline]
    if inline:
        lines.append("inline scalars (computed at the top of each kernel that uses them):")
        lines += [f"  {format_node(n, namer)}" for n in inline]
    recomputed = [n for n in fused.graph.nodes if n in fused.recomputed]
    if recomputed:
        lines.append("recomputed (computed at each element by each kernel that reads them, never stored):")
        lines += [f"  {format_node(n, namer)}" for n in recomputed]
    return "\n".join(lines) + "\n"


def format_kernels(program: KernelProgram) -> str:
    """The kernel program: buffer plan, then every kernel as a loop nest."""
    namer = Namer(program.graph)
    symbols = ", ".join(program.symbols)
    slots = len(program.workspace)
    regions = [r for r in program.regions if not r.startswith("workspace:")]
    if slots:
        regions.insert(regions.index("scratch"), f"workspace:0..{slots - 1}")
    lines = [f"program {program.name}({symbols})", "  regions: " + ", ".join(regions)]
    lines.append(f"  workspace: {slots} slots, laid out for each run's sizes, each on a {ALIGNMENT}-byte boundary")
    lines += [f"    workspace:{i:<4} {size} bytes" for i, size in enumerate(program.workspace)]
    lines.append("  buffers:")
    for value, buffer in program.buffers.items():
        at = buffer.region if buffer.offset == Poly() else f"{buffer.region}+{buffer.offset}"
        lines.append(f"    {namer(value):<24} {value.type!s:<14} {at}")
    for kernel in program.kernels:
        lines.append("")
        lines += _kernel_lines(program, kernel, namer)
    return "\n".join(lines) + "\n"


def _dims(shape) -> str:
    return ",".join(str(d) for d in shape)


def _kernel_lines(program: KernelProgram, kernel: Kernel, namer: Namer) -> list[str]:
    indices = [f"i{k}" for k in range(len(kernel.domain))]
    header = f"{kernel.name}: {kernel.kind} over [{_dims(kernel.domain)}]"
    if kernel.copy:
        source, target = kernel.copy
        at = ",".join(indices)
        return [
            header,
            f"  for ({at}) in [{_dims(kernel.domain)}]:",
            f"    {namer(target)}[{at}] = {namer(source)}[{at}]",
        ]
    lines = [header]
    inline = [n for n in _inline_used(program, kernel) if n not in kernel.nodes]
    lines += [f"  let {namer(n.output)} = {_expression(program, n, namer, indices, kernel)}" for n in inline]
    for r in kernel.reductions:
        lines.append(f"  {namer(r.output)}[*] = {r.op.identity}")
    loop = ", ".join(indices) if indices else ""
    body_indent = "    " if indices else "  "
    if indices:
        lines.append(f"  for ({loop}) in [{_dims(kernel.domain)}]:")
    stored = set(kernel.stores)
    for node in _used(program, kernel, program.recomputed):
        lines.append(f"{body_indent}{namer(node.output)} = {_expression(program, node, namer, indices, kernel)}")
    for node in kernel.nodes:
        if node in program.inline and node.output not in stored:
            continue
        text = _expression(program, node, namer, indices, kernel)
        name = namer(node.output)
        if node_class(node) == "reduce":
            target = _output_index(node, indices)
            lines.append(f"{body_indent}{name}[{target}] {node.op.name}= {text}")
        elif node.output in stored:
            lines.append(f"{body_indent}{name}[{','.join(indices)}] = {text}")
        else:
            lines.append(f"{body_indent}{name} = {text}")
    return lines


def _inline_used(program: KernelProgram, kernel: Kernel) -> list[Node]:
    return _used(program, kernel, program.inline)


def _used(program: KernelProgram, kernel: Kernel, wanted: set[Node]) -> list[Node]:
    """The nodes of `wanted` (inline or recomputed) that `kernel` computes for
    its members, inputs first."""
    used: list[Node] = []
    computed_by_readers = program.inline | program.recomputed

    def visit(value: Value) -> None:
        node = value.node
        if node in computed_by_readers and node not in used:
            for v in node.inputs:
                visit(v)
            if node in wanted:
                used.append(node)

    for node in kernel.nodes:
        for v in node.inputs:
            visit(v)
            if v.node is not None and node_class(v.node) == "layout" and v.node not in kernel.nodes:
                base = layout_view(v, program.is_stored)
                if base is not None:
                    visit(base.base)
    return used


def _output_index(node: Node, indices: list[str]) -> str:
    reduced = {a % node.inputs[0].type.rank for a in node.attrs["axes"]}
    kept = [i for k, i in enumerate(indices) if k not in reduced]
    return ",".join(kept) if kept else ""


def _expression(program: KernelProgram, node: Node, namer: Namer, indices: list[str], kernel: Kernel) -> str:
    members = set(kernel.nodes)

    def operand(i: int) -> str:
        v = node.inputs[i]
        if v.node in members or v.node in program.inline or v.node in program.recomputed or node in program.inline:
            return namer(v)
        view = operand_view(node, i, kernel.domain, program.is_stored)
        if view.base.node in program.inline:
            return namer(view.base)
        return _read(view, namer, indices)

    if node.op.name == "matmul":
        a, b = (operand_view(node, i, kernel.domain, program.is_stored) for i in range(2))
        ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
        left = f"{namer(a.base)}[{'k,i0' if ta else 'i0,k'}]"
        right = f"{namer(b.base)}[{'i1,k' if tb else 'k,i1'}]"
        inner = node.inputs[0].type.shape[0 if ta else 1]
        return f"sum(k < {inner}) {left} * {right}"
    if node_class(node) == "layout":
        view = layout_view(node.output, lambda v: v is not node.output and program.is_stored(v))
        return _read(view, namer, indices) if view is not None else namer(node.inputs[0])
    if node_class(node) == "reduce":
        return operand(0)
    args = [operand(i) for i in range(len(node.inputs))]
    if node.op.name in _SYMBOLS and len(args) == 2:
        return f"{args[0]} {_SYMBOLS[node.op.name]} {args[1]}"
    if node.op.name == "constant":
        return repr(node.attrs["value"])
    if node.op.name == "size":
        dims = [str(node.inputs[0].type.shape[a]) for a in node.attrs["axes"]]
        return "*".join(dims) or "1"
    attrs = format_attrs(node)
    return f"{node.op.name}({', '.join(args)}){attrs}"


def _read(view: View, namer: Namer, indices: list[str]) -> str:
    """`base[i0,i1]` when the view maps loop indices onto the base's axes one
    to one (or broadcasts), else `base[flat offset]`."""
    base_strides = row_major_strides(view.base.type.shape)
    picks = []
    for axis, stride in enumerate(base_strides):
        if view.base.type.shape[axis] == 1:
            picks.append("0")
            continue
        matches = [indices[k] for k, s in enumerate(view.strides) if s == stride and view.shape[k] != 1]
        if len(matches) != 1:
            break
        picks.append(matches[0])
    else:
        if view.offset == Poly():
            return f"{namer(view.base)}[{','.join(picks)}]"
    terms = [f"{s}*{i}" if s != Poly.of(1) else i for s, i in zip(view.strides, indices, strict=True) if s != Poly()]
    if view.offset != Poly():
        terms.insert(0, str(view.offset))
    return f"{namer(view.base)}[{' + '.join(terms) or '0'}]"
