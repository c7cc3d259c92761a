"""The `ember` command: compile a model file and show its IR, train it,
profile its training step, or export it to C; see or empty the compile cache.

    ember compile examples/models/mlp.py --emit train
    ember train examples/models/mlp.py --epochs 5 --save mlp.npz
    ember profile examples/models/mlp.py --batch-size 256
    ember export mlp.npz -o build/ --train
    ember cache info

`main(argv)` returns the exit status: 0 on success; 2 on an error in the
user's input or code (`ember: error: ...` on stderr: ember's one-line
message, or for an exception raised in the model file, its `data()` or its
`forward`, the file and line, the exception and that line of source);
3 on a bug in ember (`ember: internal error: ...`); 130 when interrupted.
`--traceback` prints the whole traceback instead (see `cli_report`)."""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .api import compile as compile_program
from .api import load as load_program
from .cli_report import report
from .compiler import PASS_NAMES
from .ir import BATCH, EmberError, TensorType, print_graph
from .nn.module import Module
from .program import STAGES, Program
from .runtime.checkpoint import checkpoint_path
from .runtime.object_cache import default_cache
from .runtime.threads import set_num_threads

STAGE_HELP = {
    "graph": "the traced model: forward pass (and loss)",
    "autodiff": "the model plus its backward pass (gradients)",
    "train": "one training step: gradients plus the optimizer update",
    "simplified": "after constant folding, algebraic rules, CSE and DCE",
    "fused": "the training step partitioned into kernels (native backend)",
    "kernels": "kernels as loop nests, in order, and the buffer plan (native backend)",
    "llvm": "LLVM IR before optimization (native backend)",
    "llvm-opt": "LLVM IR optimized for this CPU (native backend)",
    "asm": "assembly for this CPU (native backend)",
}
"""One line per stage for `ember compile --list-stages`."""

SUFFIXES = {"fused": ".txt", "kernels": ".txt", "llvm": ".ll", "llvm-opt": ".ll", "asm": ".s"}
"""File suffix of each non-Graph-IR stage in `--dump-dir` (default `.ir`)."""

MODEL_SETTINGS = ("loss", "optimizer", "batch_size", "input_shape", "example_inputs", "loss_weights", "dtype")
"""Optional names a model file may define; each is passed to `ember.compile`."""

MODEL_FILE_HELP = """\
A model file is a Python file that defines
  model                   an ember.nn.Module (required)
  loss, optimizer         e.g. nn.CrossEntropyLoss(), optim.Adam(lr=1e-3);
                          without them the program is inference-only
  batch_size, input_shape, example_inputs, loss_weights, dtype
                          optional settings for ember.compile
  data()                  for `ember train`: returns (x, y) or
                          (x, y, x_val, y_val) as NumPy arrays

Example (examples/models/mlp.py):
  from ember import nn, optim
  model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
  loss = nn.CrossEntropyLoss()
  optimizer = optim.Adam(lr=1e-3)
"""


class ModelFileError(EmberError):
    """A model file is missing or lacks what the command needs."""


# -- the model file ----------------------------------------------------------
def load_model_file(path: str) -> dict[str, Any]:
    """Run the model file at `path` and return its globals; it must define `model`."""
    if not Path(path).is_file():
        raise ModelFileError(f"no such model file: {path}")
    try:
        namespace = runpy.run_path(path, run_name="__ember_model__")
    except SyntaxError as e:  # in the model file or a module it imports
        raise ModelFileError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}") from None
    if "model" not in namespace:
        raise ModelFileError(f"{path} does not define `model` (an ember.nn.Module)")
    if not isinstance(namespace["model"], Module):
        raise ModelFileError(f"{path}: `model` must be an ember.nn.Module, got {type(namespace['model']).__name__}")
    return namespace


def compile_model(namespace: Mapping[str, Any], overrides: Mapping[str, Any], **options: Any) -> Program:
    """Compile a model file's `model` with its settings; `overrides` that are
    not None (command-line options) win over the file's settings."""
    settings = {name: namespace[name] for name in MODEL_SETTINGS if name in namespace}
    settings.update({name: value for name, value in overrides.items() if value is not None})
    return compile_program(namespace["model"], **settings, **options)


def load_data(namespace: Mapping[str, Any], path: str) -> tuple[Any, Any, tuple[Any, Any] | None]:
    """Call the model file's `data()`: (x, y, validation pair or None)."""
    data = namespace.get("data")
    if not callable(data):
        raise ModelFileError(f"{path} does not define data() returning (x, y) or (x, y, x_val, y_val)")
    arrays = data()
    if not isinstance(arrays, tuple | list) or len(arrays) not in (2, 4):
        got = f"{len(arrays)} values" if isinstance(arrays, tuple | list) else type(arrays).__name__
        raise ModelFileError(f"{path}: data() must return (x, y) or (x, y, x_val, y_val), got {got}")
    validation = (arrays[2], arrays[3]) if len(arrays) == 4 else None
    return arrays[0], arrays[1], validation


# -- ember compile -------------------------------------------------------------
def run_compile(args: argparse.Namespace) -> None:
    """`ember compile`: print a stage, the graphs after passes, or write every stage."""
    if args.list_stages or args.list_passes:
        print_listings(args.list_stages, args.list_passes)
        return
    if args.model is None:
        raise ModelFileError("compile needs a MODEL.py (see `ember compile --help`)")
    prog = compile_model(load_model_file(args.model), {"backend": args.backend}, print_after=args.print_after)
    emit = args.emit or (None if args.dump_dir or args.print_after else "graph")
    text = prog.dump(emit) if emit else ""
    for name, graph in prog.log.printed:
        print(f"# after {name}\n{print_graph(graph)}")
    if args.dump_dir:
        for path in write_stages(prog, Path(args.dump_dir)):
            print(f"wrote {path}")
    print(text, end="")
    if args.time_passes:
        print_timings(prog.pass_seconds)


def print_listings(stages: bool, passes: bool) -> None:
    if stages:
        for stage in STAGES:
            print(f"{stage:<12} {STAGE_HELP.get(stage, '')}".rstrip())
    if passes:
        print("\n".join(PASS_NAMES))


def write_stages(prog: Program, directory: Path) -> list[Path]:
    """Write each stage the program has to `directory` as `NN-stage.ir`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, stage in enumerate(prog.stages, 1):
        path = directory / f"{number:02d}-{stage}{SUFFIXES.get(stage, '.ir')}"
        path.write_text(prog.dump(stage))
        paths.append(path)
    return paths


def print_timings(seconds: Mapping[str, float]) -> None:
    print("# compile time per pass")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"#   {name:<16} {value * 1e3:8.2f} ms")


# -- ember train ---------------------------------------------------------------
def run_train(args: argparse.Namespace) -> None:
    """`ember train`: compile the model file with its loss and optimizer, fit it on data()."""
    if args.save is not None:
        checkpoint_path(args.save)  # a path save would refuse fails now, not after training
    namespace = load_model_file(args.model)
    missing = [name for name in ("loss", "optimizer") if name not in namespace]
    if missing:
        raise ModelFileError(f"{args.model} does not define `{missing[0]}`; ember train needs a loss and an optimizer")
    x, y, validation = load_data(namespace, args.model)
    overrides = {"backend": args.backend, "seed": args.seed, "batch_size": args.batch_size}
    prog = compile_model(namespace, overrides)
    if args.lr is not None:
        prog.lr = args.lr
    print(prog)
    history = prog.fit(x, y, epochs=args.epochs, validation_data=validation, progress=not args.no_progress)
    print_history(history)
    if args.save:
        prog.save(args.save)
        print(f"saved {args.save}")


def print_history(history: Mapping[str, list[float]]) -> None:
    """One line per epoch: every metric, then the epoch's time (the learning
    rate, constant here, is left out)."""
    epochs = len(history["loss"])
    metrics = [name for name in history if name not in ("lr", "seconds")]
    for i in range(epochs):
        values = "  ".join(f"{name} {history[name][i]:.4f}" for name in metrics)
        print(f"epoch {i + 1:>{len(str(epochs))}}/{epochs}  {values}  ({history['seconds'][i]:.2f} s)")


# -- ember profile -------------------------------------------------------------
def run_profile(args: argparse.Namespace) -> None:
    """`ember profile`: time each kernel of the training step (or predict)
    on a batch of the file's data() or, without it, of random data."""
    if args.threads is not None:
        set_num_threads(args.threads)
    namespace = load_model_file(args.model)
    prog = compile_model(namespace, {"batch_size": args.batch_size})
    rows = args.batch_size or prog.batch_size
    x, y = profile_batch(prog, namespace, args.model, rows)
    predict = args.predict or not prog.is_training
    result = prog.profile(x, None if predict else y, steps=args.steps)
    print(result.table(sort_by=args.sort))


def profile_batch(prog: Program, namespace: Mapping[str, Any], path: str, rows: int) -> tuple[Any, Any]:
    """`rows` rows of the file's data(), or random inputs (normal floats,
    zero indices) and targets (zeros: class 0, or 0.0) of the program's types."""
    if callable(namespace.get("data")):
        x, y, _ = load_data(namespace, path)
        take = lambda a: tuple(v[:rows] for v in a) if isinstance(a, tuple | list) else a[:rows]
        return take(x), take(y)
    rng = np.random.default_rng(0)

    def example(type: TensorType, random: bool) -> np.ndarray:
        shape = type.concrete_shape({BATCH: rows})
        if type.dtype.is_float and random:
            return rng.standard_normal(shape).astype(type.dtype.numpy)
        return np.zeros(shape, type.dtype.numpy)

    def arguments(types: list[TensorType], random: bool) -> Any:
        arrays = tuple(example(t, random) for t in types)
        return arrays if len(arrays) > 1 else arrays[0]

    return arguments(prog.input_types, True), arguments(prog.target_types, False) if prog.is_training else None


# -- ember export --------------------------------------------------------------
def run_export(args: argparse.Namespace) -> None:
    """`ember export`: a model file's (fresh) or a checkpoint's (trained) model as C."""
    # the reference backend: the export compiles its own native code, the JIT's would go unused
    if args.model.endswith(".npz"):
        prog = load_program(args.model, backend="reference")
    else:
        prog = compile_model(load_model_file(args.model), {"backend": "reference"})
    options = {"weights": args.weights, "max_batch": args.max_batch, "cpu": args.cpu, "shared": args.shared}
    options["threads"] = args.threads
    for path in prog.export(args.output, args.name, train=args.train, **options):
        print(f"wrote {path}")


# -- the parser ----------------------------------------------------------------
TRACEBACK_HELP = "on an error, print the whole Python traceback instead of a short message"


def common_options() -> argparse.ArgumentParser:
    """Options every command also takes after its name. SUPPRESS keeps a
    command from resetting a value given before it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=TRACEBACK_HELP)
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ember",
        description="ember compiles neural-network training.\n"
        "Compile a model file to see its IR, train it, profile it, or export it to C.",
        epilog="examples:\n  ember compile examples/models/mlp.py --emit train\n"
        "  ember train examples/models/mlp.py --epochs 5\n\n"
        "On an error ember prints a short message and exits with status 2 (3 for a bug in ember);\n"
        "--traceback prints the whole Python traceback instead.\n\n"
        "Run `ember COMMAND --help` (compile, train, profile, export, cache) for details.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ember {__version__}")
    parser.add_argument("--traceback", action="store_true", help=TRACEBACK_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_compile_parser(commands)
    add_train_parser(commands)
    add_profile_parser(commands)
    add_export_parser(commands)
    add_cache_parser(commands)
    return parser


def add_compile_parser(commands: Any) -> None:
    p = commands.add_parser(
        "compile",
        parents=[common_options()],
        help="compile a model file and print its IR",
        description="Compile MODEL.py and print one compiler stage (default: graph),\n"
        "the graph after chosen passes, or write every stage to files. LLVM compiles\n"
        "a large module in parts on the cores this process may use\n"
        "(EMBER_COMPILE_JOBS sets how many; 1: in one piece).",
        epilog=MODEL_FILE_HELP + "\nexamples:\n"
        "  ember compile examples/models/mlp.py                      # the traced graph\n"
        "  ember compile examples/models/mlp.py --emit simplified\n"
        "  ember compile examples/models/mlp.py --dump-dir out/      # out/01-graph.ir, ...\n"
        "  ember compile examples/models/mlp.py --print-after autodiff --print-after dce\n"
        "  ember compile --list-stages",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", metavar="MODEL.py", help="the model file")
    p.add_argument("--emit", metavar="STAGE", help="print this stage (default: graph); see --list-stages")
    p.add_argument("--dump-dir", metavar="DIR", help="write every stage the program has to DIR/NN-STAGE.ir")
    p.add_argument(
        "--print-after",
        metavar="PASS",
        action="append",
        default=[],
        help="print the graph after each run of PASS (repeatable); see --list-passes",
    )
    p.add_argument("--time-passes", action="store_true", help="print the compile time of each pass")
    p.add_argument("--backend", help="the backend to compile for (default: ember's default)")
    p.add_argument("--list-stages", action="store_true", help="list the stage names and exit")
    p.add_argument("--list-passes", action="store_true", help="list the pass names and exit")
    p.set_defaults(run=run_compile)


def add_train_parser(commands: Any) -> None:
    p = commands.add_parser(
        "train",
        aliases=["run"],
        parents=[common_options()],
        help="train a model file on its data()",
        description="Compile MODEL.py with its loss and optimizer and train it on the arrays\n"
        "its data() returns; print the loss (and validation metrics) per epoch.",
        epilog=MODEL_FILE_HELP + "\nexamples:\n"
        "  ember train examples/models/mlp.py\n"
        "  ember train examples/models/mlp.py --epochs 20 --lr 3e-4 --save mlp.npz --no-progress",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.py", help="the model file (must define data())")
    p.add_argument("--epochs", type=int, metavar="N", default=10, help="passes over the data (default: 10)")
    p.add_argument(
        "--batch-size", type=int, metavar="N", help="minibatch rows (default: the file's batch_size, else 32)"
    )
    p.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    p.add_argument("--backend", help="the backend to run on (default: ember's default)")
    p.add_argument("--seed", type=int, metavar="N", help="seed for initial weights and shuffling (default: 0)")
    p.add_argument("--save", metavar="PATH", help="save the trained program to PATH (.npz; ember.load reads it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_train)


def add_profile_parser(commands: Any) -> None:
    p = commands.add_parser(
        "profile",
        parents=[common_options()],
        help="time each kernel of a model file's training step",
        description="Compile MODEL.py and time each kernel of its training step (or of predict)\n"
        "on one batch of its data() (random data without one): time, share of the step,\n"
        "GFLOP/s, GB/s and the roofline bound of each kernel. Profiling does not train.",
        epilog=MODEL_FILE_HELP + "\nexamples:\n"
        "  ember profile examples/models/mlp.py --batch-size 256\n"
        "  ember profile examples/models/mlp.py --predict --batch-size 1 --threads 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.py", help="the model file")
    p.add_argument(
        "--batch-size", type=int, metavar="N", help="rows per step (default: the file's batch_size, else 32)"
    )
    p.add_argument("--steps", type=int, metavar="N", default=20, help="steps to time (default: 20)")
    p.add_argument("--threads", type=int, metavar="N", help="threads to run on (default: ember's)")
    p.add_argument("--predict", action="store_true", help="profile predict, not the training step")
    p.add_argument("--sort", choices=("time", "order"), default="time", help="kernels by time (default) or in order")
    p.set_defaults(run=run_profile)


def add_export_parser(commands: Any) -> None:
    p = commands.add_parser(
        "export",
        parents=[common_options()],
        help="compile a model ahead of time to a C header and object file",
        description="Compile MODEL.py (its model as initialized) or CHECKPOINT.npz (a saved,\n"
        "trained program) to DIR/NAME.h and DIR/NAME.o: int NAME_predict(x, y, n)\n"
        "with the weights baked in, and with --train a training step over a context\n"
        "the caller allocates. The object needs no Python, ember or malloc; link it\n"
        "with `cc main.c NAME.o -lm`.",
        epilog="examples:\n  ember export examples/models/mlp.py -o build/\n"
        "  ember export digits.npz -o build/ --name digits --train --shared\n"
        "  ember export digits.npz -o build/ --cpu x86-64-v3   # for other machines",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.py|CHECKPOINT.npz", help="a model file, or a checkpoint from Program.save")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="the directory to write to")
    p.add_argument("--name", default="model", help="the prefix of every C name and file (default: model)")
    p.add_argument("--train", action="store_true", help="also export the training step and its context")
    p.add_argument("--shared", action="store_true", help="also link libNAME.so (needs cc)")
    p.add_argument("--cpu", help="an LLVM CPU name to build for (x86-64-v3, znver4, ...; default: this machine)")
    p.add_argument(
        "--weights",
        choices=("baked", "external"),
        default="baked",
        help="baked into the object (default), or external: NAME_predict takes them (from NAME.weights)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=256,
        metavar="N",
        help="rows per native call, and the most a training step takes (default: 256)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="the most threads its kernels may use (NAME_set_threads starts them; default 1: no threads)",
    )
    p.set_defaults(run=run_export)


def add_cache_parser(commands: Any) -> None:
    p = commands.add_parser(
        "cache",
        parents=[common_options()],
        help="show or empty the on-disk compile cache",
        description="The machine code of compiled programs, kept on disk so that a later\n"
        "process loads it instead of compiling again. EMBER_CACHE_DIR sets where,\n"
        "EMBER_CACHE_MAX_BYTES its size limit, EMBER_CACHE=0 turns it off.",
        epilog="examples:\n  ember cache info\n  ember cache clear",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("info", "clear"), help="info: where and how large; clear: remove every entry")
    p.set_defaults(run=run_cache)


def run_cache(args: argparse.Namespace) -> None:
    """`ember cache info|clear`."""
    cache = default_cache()
    if cache is None:
        print("the compile cache is off (EMBER_CACHE=0)")
        return
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.directory}")
        return
    info = cache.info()
    print(f"directory  {info.directory}")
    print(f"entries    {info.entries}")
    print(f"size       {info.bytes / 2**20:.1f} MiB of at most {info.limit_bytes / 2**20:.0f} MiB")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ember` command with `argv` (default: sys.argv[1:]); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("ember: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        return report(e, sys.stderr, full_traceback=args.traceback)
    return 0
