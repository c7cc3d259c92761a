"""The C header of an exported model: its functions, sizes and layouts."""

from __future__ import annotations

from ..compiler.aot import ERRORS, Argument, Layout
from ..compiler.codegen.target import Target
from ..ir import DType

C_TYPES = {
    DType.float32: "float",
    DType.float64: "double",
    DType.int32: "int32_t",
    DType.int64: "int64_t",
    DType.bool: "uint8_t",
}

ERROR_NAMES = (
    "OK",
    "ERROR_NULL",
    "ERROR_ROWS",
    "ERROR_CONTEXT",
    "ERROR_LABEL",
    "ERROR_VALUE",
    "ERROR_THREADS",
    "ERROR_INDEX",
)


def c_header(layout: Layout, target: Target) -> str:
    """The text of NAME.h for an export laid out as `layout`."""
    spec = layout.spec
    name, upper = spec.name, spec.name.upper()
    x, y = layout.x, layout.y
    lines = [
        f"/* {name}.h: a model compiled ahead of time by ember",
        f" * for {target.triple}, CPU {target.cpu} ({target.vector_bits}-bit vectors).",
        " *",
        f" * Link {name}.o into a program: cc main.c {name}.o -lm" + (" -lpthread" if spec.threads > 1 else ""),
        " * The object needs no Python and allocates nothing: memory comes from",
        " * the caller (the context) or is static. "
        + (f"{name}_set_threads starts its helper threads." if spec.threads > 1 else "It runs on the calling thread."),
        " *",
        " * Arrays are dense and row-major (C order), one row per sample:",
        f" *   x  {_shape(x)} {C_TYPES[x.dtype]}: row i starts at x + i * {upper}_INPUT_SIZE",
        f" *   y  {_shape(y)} {C_TYPES[y.dtype]}: row i starts at y + i * {upper}_OUTPUT_SIZE",
    ]
    if layout.target is not None:
        what = "class indices" if spec.labels else "targets"
        t = layout.target
        lines.append(f" *   targets  {_shape(t)} {C_TYPES[t.dtype]} ({what}) for {name}_train_step")
    lines += [
        " */",
        f"#ifndef {upper}_H",
        f"#define {upper}_H",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"#define {upper}_INPUT_SIZE {x.row_values} /* values in one row of x */",
        f"#define {upper}_OUTPUT_SIZE {y.row_values} /* values in one row of y */",
        f"#define {upper}_MAX_BATCH {spec.max_batch} /* rows per native call; the most a training step takes */",
    ]
    if spec.external_weights:
        values = len(spec.params) // spec.dtype.itemsize
        lines.append(f"#define {upper}_WEIGHTS_SIZE {values} /* values in {name}.weights */")
    lines += ["", "/* What every function returns: */"]
    for code, error in enumerate(ERROR_NAMES):
        text = ERRORS[code].replace("MAX_BATCH", f"{upper}_MAX_BATCH").replace("CLASSES", f"{upper}_CLASSES")
        text = text.replace("TABLE_ROWS", str(spec.index_rows))
        lines.append(f"#define {upper}_{error} {code} /* {text.replace('NAME_', name + '_')} */")
    lines += ["", *_predict(layout, name, upper)]
    if spec.threads > 1:
        lines += _threads(spec.threads, name, upper)
    if spec.train is not None:
        lines += _training(layout, name, upper)
    lines += ["#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {upper}_H */", ""]
    return "\n".join(lines)


def _predict(layout: Layout, name: str, upper: str) -> list[str]:
    spec = layout.spec
    arrays = f"const {C_TYPES[layout.x.dtype]} *x, {C_TYPES[layout.y.dtype]} *y, size_t n"
    if spec.external_weights:
        weights = f"read from `weights` ({upper}_WEIGHTS_SIZE values: the contents of {name}.weights)."
        arrays = f"const {C_TYPES[spec.dtype]} *weights, {arrays}"
    else:
        weights = "the model had when it was exported (baked into the object)."
    return [
        "/* y = the model's output for the n rows of x (any n, 0 included), with the",
        f" * weights {weights}",
        " * Keeps its workspace in static memory: calls must not overlap. */",
        f"int {name}_predict({arrays});",
        "",
    ]


def _threads(threads: int, name: str, upper: str) -> list[str]:
    return [
        f"/* Threads: every call runs on the calling thread alone until {name}_set_threads(count)",
        " * lets its kernels use up to count threads (the caller's included; at most",
        f" * {upper}_MAX_THREADS), starting helper threads as needed. Helpers spin for a",
        " * millisecond after each call, then sleep. Call these from one thread, between calls;",
        f" * {name}_stop_threads() joins the helpers (before unloading a shared library). */",
        f"#define {upper}_MAX_THREADS {threads}",
        f"int {name}_set_threads(int64_t count);",
        f"void {name}_stop_threads(void);",
        "",
    ]


def _training(layout: Layout, name: str, upper: str) -> list[str]:
    spec = layout.spec
    real = C_TYPES[spec.dtype]
    x, y, t = (C_TYPES[a.dtype] for a in (layout.x, layout.y, layout.target))
    values = sum(nbytes for _, _, nbytes in spec.tensors) // spec.dtype.itemsize
    lines = [
        "/* Training: parameters, optimizer state and hyperparameters live in a context",
        f" * the caller allocates ({upper}_CONTEXT_SIZE bytes, {upper}_CONTEXT_ALIGNMENT-byte aligned),",
        f" * e.g. `static _Alignas(64) unsigned char ctx[{upper}_CONTEXT_SIZE];`, then {name}_init(ctx). */",
        f"#define {upper}_CONTEXT_SIZE {layout.context_bytes}",
        f"#define {upper}_CONTEXT_ALIGNMENT 64",
        f"#define {upper}_TARGET_SIZE {layout.target.row_values} /* values in one row of the targets */",
    ]
    if spec.labels is not None:
        lines.append(f"#define {upper}_CLASSES {spec.labels.classes}")
        if spec.labels.ignore_index is not None:
            lines.append(f"#define {upper}_IGNORE_INDEX {spec.labels.ignore_index} /* a label that adds no loss */")
    lines += [
        f"#define {upper}_PARAMETERS_SIZE {values} /* values {name}_read_parameters writes */",
        "",
        f"/* The parameters (and buffers) as {name}_read_parameters packs them, in order: */",
    ]
    packed = 0
    for tensor, _, nbytes in spec.tensors:
        count = nbytes // spec.dtype.itemsize
        lines.append(f"/*   {tensor:<24} {count:>10} values at {packed} */")
        packed += count
    return [
        *lines,
        "",
        f"size_t {name}_context_size(void); /* {upper}_CONTEXT_SIZE */",
        "",
        "/* Fills the context: the parameters, optimizer state and hyperparameters",
        " * the model had when it was exported. */",
        f"int {name}_init(void *ctx);",
        "",
        f"/* One training step on n rows (1 to {upper}_MAX_BATCH): forward, loss, backward,",
        " * the optimizer's update with learning rate lr (every param group's).",
        " * *loss receives the loss before the update (loss may be NULL). */",
        f"int {name}_train_step(void *ctx, const {x} *x, const {t} *targets, size_t n, {real} lr, {real} *loss);",
        "",
        f"/* {name}_predict with the context's parameters (reentrant: one context per thread). */",
        f"int {name}_context_predict(void *ctx, const {x} *x, {y} *y, size_t n);",
        "",
        f"/* Copy the parameters out of / into the context ({upper}_PARAMETERS_SIZE values). */",
        f"int {name}_read_parameters(void *ctx, {real} *values);",
        f"int {name}_write_parameters(void *ctx, const {real} *values);",
        "",
    ]


def _shape(argument: Argument) -> str:
    return "[" + ", ".join(["n", *map(str, argument.row_shape)]) + "]"
