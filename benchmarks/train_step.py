"""One MLP training step (forward, backward, Adam update) and one inference
batch: ember's native code against its reference interpreter, plain NumPy
(the same math written by hand) and PyTorch when it is installed.

    python benchmarks/train_step.py [--threads N] [--quick]

Peers run in alternating short rounds in one process and each cell is the
median over rounds, so machine noise hits every column alike. Ratios are
peer time / ember time (above 1: ember is faster).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import time
from collections.abc import Callable

import numpy as np

import ember
from ember import nn, optim

CASES = [  # (name, layer widths, batch)
    ("digits 64-128-10", (64, 128, 10), 32),
    ("mnist 784-512-256-10", (784, 512, 256, 10), 128),
    ("wide 1024-2048-2048-10", (1024, 2048, 2048, 10), 256),
]


def mlp(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class NumpyMLP:
    """The same training step in NumPy: ReLU MLP, cross entropy, Adam."""

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3) -> None:
        self.p = {k: v.copy() for k, v in params.items()}
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.lr, self.t = lr, 0
        self.layers = len(params) // 2

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        acts = [x]
        for i in range(self.layers):
            z = acts[-1] @ self.p[f"{2 * i}.weight"].T + self.p[f"{2 * i}.bias"]
            acts.append(np.maximum(z, 0) if i < self.layers - 1 else z)
        return acts

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[-1]

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        acts = self.forward(x)
        logits = acts[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(len(y))
        loss = -log_probs[rows, y].mean()
        grad = np.exp(log_probs)
        grad[rows, y] -= 1
        grad /= len(y)
        grads = {}
        for i in reversed(range(self.layers)):
            grads[f"{2 * i}.weight"] = grad.T @ acts[i]
            grads[f"{2 * i}.bias"] = grad.sum(axis=0)
            if i:
                grad = (grad @ self.p[f"{2 * i}.weight"]) * (acts[i] > 0)
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            step = self.lr / (1 - b1**self.t)
            self.p[k] -= step * self.m[k] / (np.sqrt(self.v[k]) / np.sqrt(1 - b2**self.t) + eps)
        return float(loss)


def torch_peer(widths, params: dict[str, np.ndarray], threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    model = torch.nn.Sequential(*[m for m in _torch_layers(torch, widths)])
    with torch.no_grad():
        for name, value in model.state_dict().items():
            value.copy_(torch.from_numpy(params[name]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def predict(x):
        with torch.inference_mode():
            return model(x)

    return step, predict, torch


def _torch_layers(torch, widths):
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        yield torch.nn.Linear(a, b)
        if i < len(widths) - 2:
            yield torch.nn.ReLU()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="threads for every peer: ember, NumPy, PyTorch")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    rounds, seconds = (3, 0.05) if args.quick else (7, 0.15)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads)
    ember.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    header = f"{'case':<24} {'what':<8} {'ember':>10} {'reference':>10} {'numpy':>10} {'torch':>10}  ratios"
    print(f"threads={args.threads}  (times per call; ratio = peer / ember)")
    print(header)
    print("-" * len(header))
    for name, widths, batch in CASES:
        x = rng.normal(size=(batch, widths[0])).astype(np.float32)
        y = rng.integers(0, widths[-1], batch)
        model = mlp(widths)
        native = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3), batch_size=batch)
        reference = ember.compile(
            model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3), batch_size=batch, backend="reference"
        )
        peers = {"ember": native, "reference": reference, "numpy": NumpyMLP(native.parameters)}
        train = {k: functools.partial(p.train_step, x, y) for k, p in peers.items()}
        infer = {k: functools.partial(p.predict, x) for k, p in peers.items()}
        peer = torch_peer(widths, native.parameters, args.threads)
        if peer is not None:
            step, predict, torch = peer
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            train["torch"] = functools.partial(step, tx, ty)
            infer["torch"] = functools.partial(predict, tx)
        for what, runs in (("train", train), ("predict", infer)):
            times = timed_rounds(runs, rounds, seconds)
            cells = [f"{times[k] * 1e6:9.0f}us" if k in times else f"{'-':>10}" for k in train]
            cells += [f"{'-':>10}"] * (4 - len(cells))
            ratios = "  ".join(f"{k} {times[k] / times['ember']:.1f}x" for k in times if k != "ember")
            print(f"{name:<24} {what:<8} {' '.join(cells)}  {ratios}")


if __name__ == "__main__":
    main()
