"""The schedule of a matmul kernel: every choice of how it runs, made once
by `schedule_matmul` and kept in a small record that the emitter (gemm.py)
follows, the `kernels` dump prints and tests check.

A schedule fixes what is known when compiling: the path (blocked, or dot
products along k for a narrow `x @ W.T`), the register tile and cache
blocking, how each operand is packed (or read in place), the matrix-vector
routine a one-row block takes, and where partial sums of C live between
K blocks. What depends on the sizes of a call is a rule the record states
and the emitted code applies: blocks of at most SMALL_M rows whose A block
(rows x min(K, KC)) fits MC x KC elements read A in place, and B too when
its rows are contiguous and K is at most DIRECT_B_DEPTH; a task of one row
takes the matrix-vector routine."""

from __future__ import annotations

from dataclasses import dataclass

from ...ir import Node
from ..fusion import Kernel
from ..plan import KernelProgram
from ..symbolic import Poly
from ..views import View, read_view
from .gemm_library import Blocking, blocking
from .kernel import Access
from .target import Target

SMALL_M = 256
"""Row blocks this small compute straight from A without packing it (and
from B, when its rows are contiguous and K is at most DIRECT_B_DEPTH).
Measured against 64, each compiled and timed round by round in one
process: squares of 128 and 256 1.03 -> 1.11 and 1.06 -> 1.10 of NumPy,
batch-128 layers 5-7% faster, batch 256 up to 4% either way; reading B in
place for more rows loses when its rows are 8 KiB apart (dY.T@X
256x2048->256 1.08 -> 1.04), and above 256 rows it lost more."""

DIRECT_B_DEPTH = 512
"""Deeper than this, B is packed even for small row blocks: reading a long
strided column panel of B again for every row tile costs more than packing
it once."""

DOT_COLUMNS = 16
"""x @ W.T with at most this many output columns (a classifier's last
layer) runs as dot products along k: the register tile would waste lanes."""

_PARTIAL_SUMS = {None: "K in one block", "output": "partial sums in C", "scratch": "partial sums in scratch"}


@dataclass(frozen=True)
class MatmulSchedule:
    """How one matmul kernel runs on one target."""

    blocking: Blocking
    dots: bool
    """A narrow x @ W.T: tiles of C as dot products along k, no K blocks."""
    one_row: str | None
    """A one-row block's matrix-vector routine: "columns" (dot products along
    the rows of x and W), "rows" (B's rows streamed into a row of C), or
    None (the blocked path)."""
    partial_sums: str | None
    """Where C's partial sums live between KC blocks: "output" (C itself, when
    the kernel stores it), "scratch", or None (K fits one block, dots, or a
    row vector: the matrix-vector routines take the whole depth at once)."""
    pack_a: str
    """How A's panels are packed: "rows" (its rows contiguous), "columns"
    (stored transposed: MR rows adjacent at every k, as dY.T) or "elements";
    small blocks read A in place (see the module docstring)."""
    pack_b: str
    """"rows", "columns" (a transposed weight, transposed in registers) or
    "elements": how B's panels are packed."""
    b_in_place: bool
    """B's rows are contiguous: blocks of at most SMALL_M rows with K at most
    DIRECT_B_DEPTH read it in place."""
    row_vector: bool = False
    """C is one row at compile time (the weight gradient of a layer with one
    output): the matrix-vector routine alone, no blocked path."""

    def describe(self) -> str:
        """One line for the kernels dump."""
        b = self.blocking
        if self.dots:
            return f"dot products along k, {b.dtype} x {b.lanes} lanes, then the epilogue"
        if self.row_vector:
            return f"one row: matrix-vector by {self.one_row}, {b.dtype} x {b.lanes} lanes, then the epilogue"
        small = f"up to {SMALL_M} rows and {b.mc}x{b.kc} elements"
        a = f"A packed by {self.pack_a} (in place {small})"
        b_in_place = f" (in place {small}, K <= {DIRECT_B_DEPTH})" if self.b_in_place else ""
        parts = [
            f"blocked, tile {b.mr}x{b.nr} ({b.dtype}), KC {b.kc} MC {b.mc} NC {b.nc}",
            a,
            f"B packed by {self.pack_b}{b_in_place}",
            f"one row: {'matrix-vector by ' + self.one_row if self.one_row else 'blocked'}",
            _PARTIAL_SUMS[self.partial_sums],
        ]
        return "; ".join(parts)


def schedule_matmul(program: KernelProgram, kernel: Kernel, target: Target) -> MatmulSchedule:
    """The schedule of matmul kernel `kernel` of `program` on `target`."""
    mm = kernel.matmul
    assert mm is not None, f"{kernel} has no matmul"
    a, b = operand_accesses(program, mm)
    rows, columns = (d if isinstance(d, int) else None for d in mm.output.type.shape)
    depth = inner_size(mm)
    plan = blocking(target, mm.output.type.dtype, columns, rows, depth if isinstance(depth, int) else None)
    one_row = gemv_kind(a, b)
    dots = isinstance(columns, int) and columns <= DOT_COLUMNS and one_row == "columns"
    row_vector = rows == 1 and one_row is not None and not dots
    if (isinstance(depth, int) and depth <= plan.kc) or dots or row_vector:
        partial = None
    else:
        partial = "output" if mm.output in kernel.stores else "scratch"
    pack_a = "columns" if a.strides[0] == Poly.of(1) else _packed_by(a)
    return MatmulSchedule(plan, dots, one_row, partial, pack_a, _packed_by(b), rows_contiguous(b), row_vector)


def _packed_by(matrix: Access) -> str:
    """How panels of `matrix` are packed: along its contiguous rows, its
    contiguous columns (transposing in registers), or element by element."""
    return "rows" if rows_contiguous(matrix) else "columns" if matrix.strides[0] == Poly.of(1) else "elements"


def inner_size(mm: Node) -> int | str:
    """K: the depth of a matmul node."""
    return mm.inputs[0].type.shape[0 if mm.attrs["transpose_a"] else 1]


def operand_accesses(program: KernelProgram, mm: Node) -> tuple[Access, Access]:
    """The logical (rows, cols) accesses of a matmul's A and B (their strides
    decide the code paths)."""
    return tuple(
        _matrix(read_view(mm.inputs[i], mm.inputs[i].type.shape, program.is_stored), mm.attrs[f"transpose_{'ab'[i]}"])
        for i in range(2)
    )  # type: ignore[return-value]


def gemv_kind(a_access: Access, b_access: Access) -> str | None:
    """The matrix-vector routine for a one-row block, if the layouts allow one."""
    if rows_contiguous(a_access) and b_access.strides[0] == Poly.of(1):
        return "columns"  # x @ W.T: dot products along contiguous rows of x and W
    if rows_contiguous(b_access):
        return "rows"
    return None


def rows_contiguous(matrix: Access) -> bool:
    return matrix.strides[1] == Poly.of(1)


def _matrix(view: View, transposed: bool) -> Access:
    """The logical (rows, cols) access of a matmul operand."""
    strides = list(view.strides[::-1] if transposed else view.strides)
    return Access(view.base, strides, view.offset)
