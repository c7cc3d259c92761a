"""Ahead-of-time export: a compiled model as a C header and an object file.

    DIR/NAME.h         the C interface (runtime/c_header.py writes it)
    DIR/NAME.o         position-independent machine code, weights included
    DIR/libNAME.so     with `shared`: the object linked as a shared library
    DIR/NAME.weights   with `weights="external"`: the weights NAME_predict takes

The object needs no Python, ember, llvmlite or malloc: only libc's memcpy
and memset (and with threads, pthreads and the futex system call). Every
file is written whole or not at all."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compiler.aot import ExportSpec, Labels, compile_export
from ..compiler.codegen.target import Target, named_target
from ..compiler.native import build_native
from ..compiler.pipeline import PassLog
from ..compiler.toolchain import c_compiler
from ..ir import ConfigError, DType, Graph
from .arena import Arena
from .atomic_file import write_atomically
from .c_header import c_header
from .host import host

WEIGHTS = ("baked", "external")

C_KEYWORDS = frozenset(
    [
        "auto",
        "break",
        "case",
        "char",
        "const",
        "continue",
        "default",
        "do",
        "double",
        "else",
        "enum",
        "extern",
        "float",
        "for",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "register",
        "restrict",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "struct",
        "switch",
        "typedef",
        "union",
        "unsigned",
        "void",
        "volatile",
        "while",
    ]
)


@dataclass(frozen=True)
class ArenaImage:
    """An arena's bytes at one moment, and where each tensor is in them."""

    data: bytes
    offsets: Mapping[str, int]
    nbytes: Mapping[str, int]

    @staticmethod
    def of(arena: Arena) -> ArenaImage:
        """Taken while no step runs (under the owner's lock)."""
        nbytes = {name: arena[name].nbytes for name in arena.names()}
        return ArenaImage(arena.buffer.tobytes(), dict(arena.byte_offsets), nbytes)


@dataclass(frozen=True)
class ExportSource:
    """What an export takes from a Program, copied under its lock."""

    graphs: Mapping[str, Graph]
    """`predict`, and `train` for a training export."""
    dtype: DType
    params: ArenaImage
    state: ArenaImage
    fixed: Mapping[str, np.ndarray]
    lr_inputs: tuple[str, ...]
    rng_step: str | None
    sample_weight: str | None
    labels: tuple[int, int | None] | None
    """(classes, ignored index) of class-index targets."""
    index_rows: int | None
    """The fewest rows of the tables the input indexes (embeddings), if any."""


def export(
    source: ExportSource,
    directory: str | os.PathLike,
    name: str,
    *,
    weights: str = "baked",
    max_batch: int = 256,
    cpu: str | None = None,
    shared: bool = False,
    threads: int = 1,
) -> list[Path]:
    """Write NAME.h and NAME.o (and the other files asked for) to `directory`; return their paths."""
    check_name(name)
    if weights not in WEIGHTS:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    training = "train" in source.graphs
    if training and weights == "external":
        raise ConfigError(
            "a training export keeps its parameters in the context (NAME_write_parameters sets them); "
            "weights='external' is for inference exports"
        )
    for option, value in (("max_batch", max_batch), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option} must be a positive integer, got {value!r}")
    compiler = c_compiler() if shared else None
    if shared and compiler is None:
        raise ConfigError("shared=True links the object with the system's C compiler (cc), and there is none")
    target = host() if cpu is None else named_target(cpu)
    spec = _spec(source, name, max_batch, weights == "external", target, threads)
    object_code, layout = compile_export(spec, target)
    files = {f"{name}.h": c_header(layout, target).encode(), f"{name}.o": object_code}
    if weights == "external":
        files[f"{name}.weights"] = spec.params
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for file, data in files.items():
        write_atomically(root / file, lambda f, data=data: f.write(data))
        written.append(root / file)
    if shared:
        written.append(_link_shared(compiler, root / f"{name}.o", root / f"lib{name}.so"))
    return written


def check_name(name: str) -> None:
    """The export's name prefixes every C symbol: it must be a C identifier."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in C_KEYWORDS:
        raise ConfigError(f"an export's name must be a C identifier (letters, digits, _), got {name!r}")


def _spec(source: ExportSource, name: str, max_batch: int, external: bool, target: Target, threads: int) -> ExportSpec:
    params = source.params
    build = build_native(source.graphs, params.offsets, source.state.offsets, target, PassLog())
    tensors = tuple((tensor, offset, params.nbytes[tensor]) for tensor, offset in params.offsets.items())
    return ExportSpec(
        name=name,
        dtype=source.dtype,
        max_batch=max_batch,
        predict=build.programs["predict"],
        train=build.programs.get("train"),
        params=params.data,
        tensors=tensors,
        state=source.state.data,
        fixed={key: np.ascontiguousarray(value).tobytes() for key, value in source.fixed.items()},
        lr_inputs=source.lr_inputs,
        rng_step=source.rng_step,
        sample_weight=source.sample_weight,
        labels=Labels(*source.labels) if source.labels else None,
        external_weights=external,
        threads=threads,
        index_rows=source.index_rows,
    )


def _link_shared(compiler: str, object_file: Path, library: Path) -> Path:
    """`cc -shared` the object into `library` (written whole, as the other files)."""
    temporary = library.with_name(f".{library.name}.tmp")
    command: Sequence[str] = [compiler, "-shared", "-o", str(temporary), str(object_file), "-lm", "-lpthread"]
    linked = subprocess.run(command, capture_output=True, text=True)
    if linked.returncode != 0:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"linking {library.name} failed: {' '.join(command)}\n{linked.stderr.strip()}")
    os.replace(temporary, library)
    return library
