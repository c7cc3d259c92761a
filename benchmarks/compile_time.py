"""How long a new process takes to get a compiled model running: `import
ember`, `ember.compile` of the training step plus its first call, and the
first `predict`; cold (an empty compile cache) and warm (a second process
finding the machine code in the cache), beside the first call of a
`jax.jit` training step (plain SGD) and of a `torch.compile` model's
forward, backward and Adam step, where those are installed. "new model"
is a cold compile of the model after another process compiled a model
with each hidden layer 8 wider: the program's own code is not in the
cache, the code programs share, compiled once per machine
(compiler/shared_code.py: the matmul library, microkernels named by
their text, scalar math), is. The cold compile is also measured
unpinned, on every core this process may use, where ember compiles a
large module in parts in parallel (compiler/parallel.py).

    python benchmarks/compile_time.py
    python benchmarks/compile_time.py --models 784-128-10 --repeat 3

Every other measurement runs in a fresh process pinned to one core; each cell is
the best of `--repeat` processes (import times vary with the file cache).
ember's bytecode is compiled first, as installing a wheel does: with
PYTHONDONTWRITEBYTECODE set and sources newer than their bytecode, every
process would compile ember's modules again (+0.05-0.1 s of import).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

MODELS = ["13-64-64-1", "784-128-10", "784-512-512-10", "1024-2048-2048-1024-10"]
BATCH = 64

EMBER = """
import json, os, sys, time
if os.environ.get("PIN_ONE_CORE", "1") == "1":
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
start = time.perf_counter()
import ember
imported = time.perf_counter()
import numpy as np
from ember import nn, optim
widths = [int(w) for w in sys.argv[1].split("-")]
layers = []
for i in range(len(widths) - 1):
    layers.append(nn.Linear(widths[i], widths[i + 1]))
    if i < len(widths) - 2:
        layers.append(nn.ReLU())
loss = nn.MSELoss() if widths[-1] == 1 else nn.CrossEntropyLoss()
x = np.random.default_rng(0).normal(size=(BATCH, widths[0])).astype(np.float32)
y = np.zeros((BATCH, 1), np.float32) if widths[-1] == 1 else np.zeros(BATCH, np.int64)
begin = time.perf_counter()
prog = ember.compile(nn.Sequential(*layers), loss=loss, optimizer=optim.Adam(lr=1e-3), batch_size=BATCH)
prog.train_step(x, y)
trained = time.perf_counter()
prog.predict(x[:1])
predicted = time.perf_counter()
print(json.dumps({"import": imported - start, "compile": trained - begin, "predict": predicted - trained}))
""".replace("BATCH", str(BATCH))

JAX = """
import json, os, sys, time
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
import jax, jax.numpy as jnp
widths = [int(w) for w in sys.argv[1].split("-")]
keys = jax.random.split(jax.random.PRNGKey(0), len(widths))
params = [(jax.random.normal(k, (a, b)) * 0.01, jnp.zeros(b)) for k, a, b in zip(keys, widths, widths[1:])]
def loss(params, x, y):
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        x = jax.nn.relu(x) if i < len(params) - 1 else x
    return jnp.mean((x - y) ** 2)
step = jax.jit(lambda p, x, y: jax.tree.map(lambda a, g: a - 1e-3 * g, p, jax.grad(loss)(p, x, y)))
x, y = jnp.ones((BATCH, widths[0])), jnp.zeros((BATCH, widths[-1]))
begin = time.perf_counter()
jax.block_until_ready(step(params, x, y))
print(json.dumps({"compile": time.perf_counter() - begin}))
""".replace("BATCH", str(BATCH))

TORCH = """
import json, os, sys, time
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
import torch
torch.set_num_threads(1)
widths = [int(w) for w in sys.argv[1].split("-")]
layers = []
for i in range(len(widths) - 1):
    layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
    if i < len(widths) - 2:
        layers.append(torch.nn.ReLU())
model = torch.compile(torch.nn.Sequential(*layers))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.ones(BATCH, widths[0]), torch.zeros(BATCH, widths[-1])
begin = time.perf_counter()
loss = torch.nn.functional.mse_loss(model(x), y)
loss.backward()
opt.step()
print(json.dumps({"compile": time.perf_counter() - begin}))
""".replace("BATCH", str(BATCH))


def run(program: str, model: str, env: dict[str, str]) -> dict[str, float] | None:
    """One fresh process's timings, or None when it failed (a peer not installed)."""
    done = subprocess.run(
        [sys.executable, "-c", program, model], capture_output=True, text=True, env={**os.environ, **env}
    )
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def neighbour(model: str) -> str:
    """`model` with each hidden layer 8 wider: another program (none of its
    kernels is `model`'s) that calls the same matmul library functions."""
    widths = model.split("-")
    return "-".join([widths[0], *(str(int(w) + 8) for w in widths[1:-1]), widths[-1]])


def best(
    program: str, model: str, env: dict[str, str], repeat: int, fresh_cache: bool = False, after: str | None = None
) -> dict | None:
    """The best of `repeat` processes, key by key (`fresh_cache`: each one
    starts with an empty cache, into which a process compiling model `after`
    first put its code)."""
    results = []
    for _ in range(repeat):
        if fresh_cache:
            with tempfile.TemporaryDirectory() as directory:
                if after is not None:
                    run(program, after, {**env, "EMBER_CACHE_DIR": directory})
                results.append(run(program, model, {**env, "EMBER_CACHE_DIR": directory}))
        else:
            results.append(run(program, model, env))
    if any(r is None for r in results):
        return None
    return {key: min(r[key] for r in results) for key in results[0]}


def compile_bytecode() -> None:
    """Bring ember's bytecode up to date (`compileall`: what `pip install` does)."""
    packages = ["ember", "ember.compiler", "ember.ir", "ember.runtime"]
    folders = {folder for name in packages for folder in importlib.util.find_spec(name).submodule_search_locations}
    subprocess.run([sys.executable, "-m", "compileall", "-q", *sorted(folders)], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated layer widths")
    parser.add_argument("--repeat", type=int, default=3, help="processes per cell (the best is shown)")
    args = parser.parse_args()
    compile_bytecode()
    cores = len(os.sched_getaffinity(0))
    pinned = f"pinned to one core (but '{cores} cores')"
    print(f"seconds, best of {args.repeat} fresh processes {pinned}; batch {BATCH}, Adam")
    all_cores = f"{cores} cores"
    header = f"{'model':<24}{'import':>8}{'compile+step':>14}{'predict':>9}"
    header += f"{'new model: compile+step':>25}{'predict':>9}"
    header += f"{all_cores + ': compile+step':>22}{'predict':>9}{'warm compile+step':>19}"
    header += f"{'warm predict':>14}{'jax.jit':>9}{'torch.compile':>15}"
    print(header)
    print("-" * len(header))
    for model in args.models.split(","):
        cold = best(EMBER, model, {}, args.repeat, fresh_cache=True)
        new = best(EMBER, model, {}, args.repeat, fresh_cache=True, after=neighbour(model))
        unpinned = best(EMBER, model, {"PIN_ONE_CORE": "0"}, args.repeat, fresh_cache=True)
        with tempfile.TemporaryDirectory() as directory:
            env = {"EMBER_CACHE_DIR": directory}
            run(EMBER, model, env)  # fills the cache
            warm = best(EMBER, model, env, args.repeat)
        jax = best(JAX, model, {}, 1)
        torch = best(TORCH, model, {}, 1)

        def cell(result: dict | None, key: str, width: int) -> str:
            return f"{result[key]:>{width}.3f}" if result else f"{'-':>{width}}"

        row = f"{model:<24}{cell(cold, 'import', 8)}{cell(cold, 'compile', 14)}{cell(cold, 'predict', 9)}"
        row += f"{cell(new, 'compile', 25)}{cell(new, 'predict', 9)}"
        row += f"{cell(unpinned, 'compile', 22)}{cell(unpinned, 'predict', 9)}"
        row += f"{cell(warm, 'compile', 19)}{cell(warm, 'predict', 14)}{cell(jax, 'compile', 9)}"
        row += cell(torch, "compile", 15)
        print(row, flush=True)


if __name__ == "__main__":
    main()
