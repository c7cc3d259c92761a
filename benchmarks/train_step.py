"""One MLP training step (forward, loss, backward, update) and one inference
batch (the training batch's rows, or the case's own: one row on S-sgd for
latency, 1 024 on M): ember against every peer that is installed — the same step written
in NumPy, PyTorch eager, `torch.compile` and JAX `jit`.

    python benchmarks/train_step.py --threads 1    # pinned to one core
    python benchmarks/train_step.py --threads 2    # every core
    python benchmarks/train_step.py --quick --cases R,S-adam

With `--threads 1` the process is pinned to one core (os.sched_setaffinity)
before NumPy, PyTorch or JAX start a thread, so no library can use a
second. Peers run in alternating rounds with pauses between them (spinning
worker threads go idle), and each keeps its median; GFLOP/s counts useful
work only (6 * batch * sum of in * out per training step, 2 * ... per
inference). `ember/best` is ember's time over the best peer's: below 1,
ember is faster.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    widths: tuple[int, ...]
    batch: int
    loss: str  # "ce" (cross entropy, class labels) or "mse" (one float target per row)
    optimizer: str  # "sgd" or "adam"
    predict_rows: int | None = None  # rows of the inference batch (None: the training batch)

    def rows(self, train: bool) -> int:
        return self.batch if train or self.predict_rows is None else self.predict_rows

    def label(self, train: bool) -> str:
        return f"{'-'.join(map(str, self.widths))} b{self.rows(train)} {self.loss.upper()}/{self.optimizer.upper()}"

    def flops(self, train: bool) -> int:
        """Useful work: 2 flops per multiply-add of every layer, three matmuls per layer when training."""
        macs = self.rows(train) * sum(a * b for a, b in itertools.pairwise(self.widths))
        return (6 if train else 2) * macs


CASES = [
    Case("R", (13, 64, 64, 1), 32, "mse", "sgd"),
    Case("S-sgd", (784, 128, 10), 64, "ce", "sgd", predict_rows=1),  # inference latency
    Case("S-adam", (784, 128, 10), 64, "ce", "adam"),
    Case("M", (784, 512, 512, 10), 256, "ce", "adam", predict_rows=1024),
    Case("L", (1024, 2048, 2048, 1024, 10), 512, "ce", "adam"),
]
LR = 1e-3


# -- ember ---------------------------------------------------------------------
def ember_peer(case: Case, x, y, px):
    import ember
    from ember import nn, optim

    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(case.widths)):
        layers += [nn.Linear(a, b), nn.ReLU()] if i < len(case.widths) - 2 else [nn.Linear(a, b)]
    loss = nn.CrossEntropyLoss() if case.loss == "ce" else nn.MSELoss()
    optimizer = optim.SGD(lr=LR) if case.optimizer == "sgd" else optim.Adam(lr=LR)
    prog = ember.compile(nn.Sequential(*layers), loss=loss, optimizer=optimizer, batch_size=case.batch)
    return functools.partial(prog.train_step, x, y), functools.partial(prog.predict, px), prog.parameters


# -- NumPy ---------------------------------------------------------------------
class NumpyMLP:
    """The same training step written in NumPy: ReLU MLP, the case's loss and optimizer."""

    def __init__(self, case: Case, params: dict) -> None:
        import numpy as np

        self.np, self.case = np, case
        self.p = {k: v.copy() for k, v in params.items()}
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0
        self.layers = len(params) // 2

    def forward(self, x) -> list:
        acts = [x]
        for i in range(self.layers):
            z = acts[-1] @ self.p[f"{2 * i}.weight"].T + self.p[f"{2 * i}.bias"]
            acts.append(self.np.maximum(z, 0) if i < self.layers - 1 else z)
        return acts

    def predict(self, x):
        return self.forward(x)[-1]

    def train_step(self, x, y) -> float:
        np = self.np
        acts = self.forward(x)
        out = acts[-1]
        if self.case.loss == "ce":
            shifted = out - out.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            rows = np.arange(len(y))
            loss = -log_probs[rows, y].mean()
            grad = np.exp(log_probs)
            grad[rows, y] -= 1
            grad /= len(y)
        else:
            diff = out - y
            loss = (diff * diff).mean()
            grad = diff * (2 / diff.size)
        grads = {}
        for i in reversed(range(self.layers)):
            grads[f"{2 * i}.weight"] = grad.T @ acts[i]
            grads[f"{2 * i}.bias"] = grad.sum(axis=0)
            if i:
                grad = (grad @ self.p[f"{2 * i}.weight"]) * (acts[i] > 0)
        self.t += 1
        for k, g in grads.items():
            if self.case.optimizer == "sgd":
                self.p[k] -= LR * g
                continue
            b1, b2, eps = 0.9, 0.999, 1e-8
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            step = LR / (1 - b1**self.t)
            self.p[k] -= step * self.m[k] / (np.sqrt(self.v[k]) / np.sqrt(1 - b2**self.t) + eps)
        return float(loss)


# -- PyTorch -------------------------------------------------------------------
def torch_peers(case: Case, params: dict, x, y, px, threads: int) -> dict[str, tuple[Callable, Callable]]:
    """PyTorch eager and torch.compile (each where it works here)."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    tx, ty, tpx = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(px)
    peers = {"torch": _torch_step(torch, case, params, tx, ty, tpx, compiled=False)}
    try:
        compiled = _torch_step(torch, case, params, tx, ty, tpx, compiled=True)
        compiled[0]()  # compiles now (tens of seconds), or fails here
        compiled[1]()
        peers["torch.compile"] = compiled
    except Exception as e:  # no C++ toolchain, an unsupported platform...
        print(f"# torch.compile left out: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
    return peers


def _torch_step(torch, case: Case, params: dict, tx, ty, tpx, compiled: bool) -> tuple[Callable, Callable]:
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(case.widths)):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()] if i < len(case.widths) - 2 else [torch.nn.Linear(a, b)]
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            value.copy_(torch.from_numpy(params[name]))
    opt = (torch.optim.SGD if case.optimizer == "sgd" else torch.optim.Adam)(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss() if case.loss == "ce" else torch.nn.MSELoss()
    forward = torch.compile(model) if compiled else model

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(tx), ty)
        loss.backward()
        opt.step()
        return loss

    def predict():
        with torch.inference_mode():
            return forward(tpx)

    return step, predict


# -- JAX -----------------------------------------------------------------------
def jax_peer(case: Case, params: dict, x, y, px) -> tuple[Callable, Callable] | None:
    """The step as one jitted function (parameters and Adam moments donated)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    layers = len(params) // 2
    state = {
        "p": {k: jnp.asarray(v) for k, v in params.items()},
        "m": {k: jnp.zeros_like(v) for k, v in params.items()},
        "v": {k: jnp.zeros_like(v) for k, v in params.items()},
        "t": jnp.zeros((), jnp.float32),
    }

    def forward(p, inputs):
        h = inputs
        for i in range(layers):
            h = h @ p[f"{2 * i}.weight"].T + p[f"{2 * i}.bias"]
            h = jax.nn.relu(h) if i < layers - 1 else h
        return h

    def loss_of(p, inputs, targets):
        out = forward(p, inputs)
        if case.loss == "mse":
            return jnp.mean((out - targets) ** 2)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), targets[:, None], axis=1))

    @functools.partial(jax.jit, donate_argnums=0)
    def train(s, inputs, targets):
        loss, grads = jax.value_and_grad(loss_of)(s["p"], inputs, targets)
        t = s["t"] + 1
        if case.optimizer == "sgd":
            return {**s, "p": jax.tree.map(lambda p, g: p - LR * g, s["p"], grads), "t": t}, loss
        b1, b2, eps = 0.9, 0.999, 1e-8
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, s["m"], grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, s["v"], grads)
        step = LR / (1 - b1**t)
        p = jax.tree.map(lambda p, m, v: p - step * m / (jnp.sqrt(v) / jnp.sqrt(1 - b2**t) + eps), s["p"], m, v)
        return {"p": p, "m": m, "v": v, "t": t}, loss

    predict_fn = jax.jit(forward)
    jx, jy, jpx = jnp.asarray(x), jnp.asarray(y), jnp.asarray(px)
    holder = [state]

    def step():
        holder[0], loss = train(holder[0], jx, jy)
        return loss.block_until_ready()

    def predict():
        return predict_fn(holder[0]["p"], jpx).block_until_ready()

    step()  # compile
    predict()
    return step, predict


# -- timing --------------------------------------------------------------------
def timed_rounds(runs: dict[str, Callable[[], object]], rounds: int, seconds: float) -> dict[str, float]:
    """Median seconds per call of each runner, over alternating rounds."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            run()
            start = time.perf_counter()
            calls = 0
            while True:
                run()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed > seconds:
                    break
            samples[name].append(elapsed / calls)
            time.sleep(0.12)  # let spinning worker threads (ember, OpenBLAS, torch) go idle
    return {name: statistics.median(values) for name, values in samples.items()}


def run_case(case: Case, threads: int, rounds: int, seconds: float, peers: set[str]) -> list[tuple[str, dict]]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(case.batch, case.widths[0])).astype(np.float32)
    if case.loss == "ce":
        y = rng.integers(0, case.widths[-1], case.batch)
    else:
        y = rng.normal(size=(case.batch, case.widths[-1])).astype(np.float32)
    px = rng.normal(size=(case.rows(train=False), case.widths[0])).astype(np.float32)
    train, predict, params = ember_peer(case, x, y, px)
    trains: dict[str, Callable] = {"ember": train}
    predicts: dict[str, Callable] = {"ember": predict}
    if "numpy" in peers:
        numpy_mlp = NumpyMLP(case, params)
        trains["numpy"] = functools.partial(numpy_mlp.train_step, x, y)
        predicts["numpy"] = functools.partial(numpy_mlp.predict, px)
    torch_runs = torch_peers(case, params, x, y, px, threads) if peers & {"torch", "torch.compile"} else {}
    for name, (step, infer) in torch_runs.items():
        if name in peers:
            trains[name], predicts[name] = step, infer
    jax_runs = jax_peer(case, params, x, y, px) if "jax" in peers else None
    if jax_runs is not None:
        trains["jax"], predicts["jax"] = jax_runs
    return [(what, timed_rounds(runs, rounds, seconds)) for what, runs in (("train", trains), ("predict", predicts))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="threads for every peer (1: pinned to one core)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--cases", default=",".join(c.name for c in CASES), help="comma-separated case names")
    parser.add_argument(
        "--peers", default="numpy,torch,torch.compile,jax", help="comma-separated peers (those installed run)"
    )
    args = parser.parse_args()
    if args.threads == 1:  # before any library starts a thread
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    from threadpoolctl import threadpool_limits

    import ember

    threadpool_limits(limits=args.threads)
    ember.set_num_threads(args.threads)
    rounds, seconds = (3, 0.05) if args.quick else (5, 0.2)
    chosen = [c for c in CASES if c.name in args.cases.split(",")]
    peers = set(args.peers.split(","))
    pinned = f"pinned to CPU {sorted(os.sched_getaffinity(0))[0]}" if args.threads == 1 else "all cores"
    print(f"threads={args.threads} ({pinned}); us per call, median of {rounds} alternating rounds")
    rows = []
    names: list[str] = []
    for case in chosen:
        for what, times in run_case(case, args.threads, rounds, seconds, peers):
            names += [n for n in times if n not in names]
            rows.append((case, what, times))
    _print_table(rows, names)


def _print_table(rows: list[tuple[Case, str, dict[str, float]]], names: list[str]) -> None:
    header = f"{'case':<7} {'what':<8} {'layers, batch, loss/opt':<34}" + "".join(f"{n:>14}" for n in names)
    header += f"{'ember GFLOP/s':>15} {'best peer':>14} {'ember/best':>11}"
    print(header)
    print("-" * len(header))
    for case, what, times in rows:
        cells = "".join(f"{times[n] * 1e6:>14.1f}" if n in times else f"{'-':>14}" for n in names)
        others = {n: t for n, t in times.items() if n != "ember"}
        best = min(others, key=others.__getitem__) if others else None
        gflops = case.flops(what == "train") / times["ember"] / 1e9
        ratio = f"{times['ember'] / others[best]:>11.2f}" if best else f"{'-':>11}"
        label = case.label(what == "train")
        print(f"{case.name:<7} {what:<8} {label:<34}{cells}{gflops:>15.1f} {best or '-':>14} {ratio}")


if __name__ == "__main__":
    main()
