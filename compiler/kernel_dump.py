"""Readable dumps of the `fused` and `kernels` stages.

`fused` lists each kernel with the IR lines of its members. `kernels`
shows the program the code generator sees: the kernels in execution order,
each as a loop nest in pseudo-C over its domain (a matmul kernel with its
schedule: path, tile, blocking, packing, partial sums), and the buffer plan
(where every tensor lives and which kernels touch it). A row kernel shows its
loop over rows and, inside it, each sweep over the row followed by the
per-row scalars computed after it; a row reduction (`sum=`) starts from
its identity at each row, and `%v[row:j]` is the row buffer of `%v`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..ir import Node, Value
from ..ir.printer import Namer, format_attrs, format_node
from .fusion import FusedGraph, Kernel, node_class, row_reduction_outer
from .memory import ALIGNMENT
from .plan import KernelProgram, is_table, operand_view
from .symbolic import Poly, row_major_strides
from .views import View, accumulate_view, layout_view

_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def format_fused(fused: FusedGraph, name: str) -> str:
    """Each kernel of `fused` and the IR of its members."""
    namer = Namer(fused.graph)
    lines = [f"fused {name}: {len(fused.kernels)} kernels from {len(fused.graph.nodes)} nodes"]
    for kernel in fused.kernels:
        stores = ", ".join(namer(v) for v in kernel.stores)
        sweeps = f" in {_sweeps(kernel)} per row" if kernel.rows else ""
        lines.append(
            f"kernel {kernel.name}: {kernel.kind} over [{_dims(kernel.domain)}]{sweeps} -> {stores or 'nothing'}"
        )
        if kernel.rows:
            lines += _fused_row_lines(kernel, namer)
        else:
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


def format_kernels(program: KernelProgram, schedules: Mapping[str, str] | None = None) -> str:
    """The kernel program: buffer plan, then every kernel as a loop nest
    (`schedules`: a line on how each matmul kernel runs, by kernel name)."""
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
        kernel_lines = _kernel_lines(program, kernel, namer)
        if schedules and kernel.name in schedules:
            kernel_lines.insert(1, f"  schedule: {schedules[kernel.name]}")
        lines += kernel_lines
    return "\n".join(lines) + "\n"


def _dims(shape) -> str:
    return ",".join(str(d) for d in shape)


def _kernel_lines(program: KernelProgram, kernel: Kernel, namer: Namer) -> list[str]:
    indices = [f"i{k}" for k in range(len(kernel.domain))]
    header = f"{kernel.name}: {kernel.kind} over [{_dims(kernel.domain)}]"
    if kernel.rows:
        header += f", {_sweeps(kernel)} per row"
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
    row_reductions = _row_reductions(kernel) if kernel.rows else []
    for r in kernel.reductions:
        if r not in row_reductions:
            lines.append(f"  {namer(r.output)}[*] = {r.op.identity}")
    if kernel.rows:
        return lines + _row_kernel_lines(program, kernel, namer, indices)
    loop = ", ".join(indices) if indices else ""
    body_indent = "    " if indices else "  "
    if indices:
        lines.append(f"  for ({loop}) in [{_dims(kernel.domain)}]:")
    stored = set(kernel.stores)
    for node in _used(program, kernel.nodes, program.recomputed):
        lines.append(f"{body_indent}{namer(node.output)} = {_expression(program, node, namer, indices, kernel)}")
    for node in kernel.nodes:
        if node in program.inline and node.output not in stored:
            continue
        text = _expression(program, node, namer, indices, kernel)
        name = namer(node.output)
        if node_class(node) == "reduce":
            target = _output_index(program, node, indices, kernel, namer)
            lines.append(f"{body_indent}{target} {node.op.name}= {text}")
        elif node.output in stored:
            lines.append(f"{body_indent}{name}[{','.join(indices)}] = {text}")
        else:
            lines.append(f"{body_indent}{name} = {text}")
    return lines


def _sweeps(kernel: Kernel) -> str:
    count = kernel.rows.sweeps
    return f"{count} sweep" if count == 1 else f"{count} sweeps"


def _fused_row_lines(kernel: Kernel, namer: Namer) -> list[str]:
    """A row kernel's members grouped by sweep, each sweep followed by the
    per-row scalars computed after it."""
    schedule = kernel.rows
    lines = []
    for sweep in range(-1, schedule.sweeps):
        row = [n for n in kernel.nodes if n not in schedule.scalars and schedule.phase[n] == sweep]
        scalars = [n for n in kernel.nodes if n in schedule.scalars and schedule.phase[n] == sweep]
        if row:
            lines.append(f"  sweep {sweep}:")
            lines += [f"    {format_node(n, namer)}" for n in row]
        if scalars:
            lines.append("  per row, before the first sweep:" if sweep < 0 else f"  per row, after sweep {sweep}:")
            lines += [f"    {format_node(n, namer)}" for n in scalars]
    return lines


def _row_kernel_lines(program: KernelProgram, kernel: Kernel, namer: Namer, indices: list[str]) -> list[str]:
    """A row kernel as a loop over rows holding its sweeps and scalars."""
    schedule = kernel.rows
    outer, rows = indices[: schedule.outer], indices[schedule.outer :]
    row_index = ",".join(i for i, d in zip(outer, kernel.domain, strict=False) if d != 1)
    stored = set(kernel.stores)
    lines = []
    indent = "  "
    if outer:
        lines.append(f"  for ({', '.join(outer)}) in [{_dims(kernel.domain[: schedule.outer])}]:")
        indent = "    "

    def line(node: Node, prefix: str, again: bool = False) -> str:
        text = _expression(program, node, namer, indices, kernel)
        name = namer(node.output)
        if node_class(node) == "reduce":
            target = name if node in _row_reductions(kernel) else _output_index(program, node, indices, kernel, namer)
            return f"{prefix}{target} {node.op.name}= {text}"
        if node.output in stored and not again:
            at = row_index if node in schedule.scalars else ",".join(indices)
            return f"{prefix}{name}[{at}] = {text}"
        if node in schedule.keep and not again:
            return f"{prefix}{name}[row:{','.join(rows)}] = {text}"
        return f"{prefix}{name} = {text}"

    for sweep in range(-1, schedule.sweeps):
        if sweep >= 0:
            lines.append(
                f"{indent}sweep {sweep}: for ({', '.join(rows)}) in [{_dims(kernel.domain[schedule.outer :])}]:"
            )
            for n in _used(program, schedule.evaluate[sweep], program.recomputed):
                lines.append(f"{indent}  {namer(n.output)} = {_expression(program, n, namer, indices, kernel)}")
            for n in schedule.evaluate[sweep]:
                if n in schedule.reload[sweep]:
                    at = ",".join(indices) if n.output in stored else f"row:{','.join(rows)}"
                    lines.append(f"{indent}  {namer(n.output)} = {namer(n.output)}[{at}]")
                else:
                    lines.append(line(n, indent + "  ", again=schedule.phase[n] < sweep))
        for n in kernel.nodes:
            if n in schedule.scalars and schedule.phase[n] == sweep:
                lines.append(line(n, indent))
        for r in _row_reductions(kernel):
            if schedule.phase[r] == sweep and r.output in stored:
                lines.append(f"{indent}{namer(r.output)}[{row_index}] = {namer(r.output)}")
    return lines


def _row_reductions(kernel: Kernel) -> list[Node]:
    return [n for n in kernel.reductions if row_reduction_outer(n) == kernel.rows.outer]


def _inline_used(program: KernelProgram, kernel: Kernel) -> list[Node]:
    return _used(program, kernel.nodes, program.inline)


def _used(program: KernelProgram, members: Sequence[Node], wanted: set[Node]) -> list[Node]:
    """The nodes of `wanted` (inline or recomputed) that a kernel computes for
    `members`, inputs first."""
    used: list[Node] = []
    computed_by_readers = program.inline | program.recomputed

    def visit(value: Value) -> None:
        node = value.node
        if node in computed_by_readers and node not in used:
            for v in node.inputs:
                visit(v)
            if node in wanted:
                used.append(node)

    for node in members:
        for v in node.inputs:
            visit(v)
            if v.node is not None and node_class(v.node) == "layout" and v.node not in members:
                base = layout_view(v, program.is_stored)
                if base is not None:
                    visit(base.base)
    return used


def _output_index(program: KernelProgram, node: Node, indices: list[str], kernel: Kernel, namer: Namer) -> str:
    """Where a reduction accumulates: `out[i0]` over its kept axes, the row
    its index names (scatter_add), or (pad) the strided place its rule gives."""
    if node.op.rows == "scatter":
        return f"{namer(node.output)}[{_operand(program, node, 1, namer, indices, kernel)}, {indices[-1]}]"
    if "axes" not in node.attrs:
        return _read(accumulate_view(node, kernel.domain), namer, indices)
    reduced = {a % node.inputs[0].type.rank for a in node.attrs["axes"]}
    kept = [i for k, i in enumerate(indices) if k not in reduced]
    return f"{namer(node.output)}[{','.join(kept)}]"


def _operand(program: KernelProgram, node: Node, i: int, namer: Namer, indices: list[str], kernel: Kernel) -> str:
    """How `node` reads input `i`: a member's name or a read from memory."""
    v = node.inputs[i]
    if v.node in kernel.nodes or v.node in program.inline or v.node in program.recomputed or node in program.inline:
        return namer(v)
    view = operand_view(node, i, kernel.domain, program.is_stored)
    if view.base.node in program.inline:
        return namer(view.base)
    if is_table(node, i):
        return namer(view.base)
    return _read(view, namer, indices)


def _expression(program: KernelProgram, node: Node, namer: Namer, indices: list[str], kernel: Kernel) -> str:
    def operand(i: int) -> str:
        v = node.inputs[i]
        if kernel.rows and _member_base(v, set(kernel.nodes)) is not None:
            return namer(_member_base(v, set(kernel.nodes)))  # a row kernel reads its members in registers
        return _operand(program, node, i, namer, indices, kernel)

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
    if node.op.rows == "gather":
        return f"{operand(0)}[{operand(1)}, {indices[-1]}]"
    args = [operand(i) for i in range(len(node.inputs))]
    if node.op.name in _SYMBOLS and len(args) == 2:
        return f"{args[0]} {_SYMBOLS[node.op.name]} {args[1]}"
    if node.op.name == "constant":
        return repr(node.attrs["value"])
    if node.op.counts is not None:
        dims = node.op.counts(node.inputs[0].type.shape, **node.attrs)
        return "*".join(map(str, dims)) or "1"
    attrs = format_attrs(node)
    return f"{node.op.name}({', '.join(args)}){attrs}"


def _member_base(value: Value, members: set[Node]) -> Value | None:
    """The kernel member whose value `value` is (through layout views), if any."""
    while value.node is not None and value.node not in members and node_class(value.node) == "layout":
        value = value.node.inputs[0]
    return value if value.node in members else None


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
        walked = [k for k, s in enumerate(view.strides) if s != Poly() and view.shape[k] != 1]
        if view.offset == Poly() and len(walked) == sum(p != "0" for p in picks):  # every index is shown
            return f"{namer(view.base)}[{','.join(picks)}]"
    terms = [f"{s}*{i}" if s != Poly.of(1) else i for s, i in zip(view.strides, indices, strict=True) if s != Poly()]
    if view.offset != Poly():
        terms.insert(0, str(view.offset))
    return f"{namer(view.base)}[{' + '.join(terms) or '0'}]"
