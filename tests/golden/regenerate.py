"""Rewrite the golden IR dumps in this folder from the current compiler.

    python tests/golden/regenerate.py

Then review `git diff tests/golden`: every change there is a change in what
ember prints, and should be one you meant to make.
"""

from __future__ import annotations

from pathlib import Path

import ember
from ember import nn, optim

GOLDEN_DIR = Path(__file__).resolve().parent
STAGES = ("graph", "autodiff", "train", "simplified")
"""The Graph-IR stages checked in, as `mlp_<stage>.ir`."""


def reference_program() -> ember.Program:
    """The fixed model the golden dumps come from."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3), dtype="float32", seed=0)


def golden_path(stage: str) -> Path:
    return GOLDEN_DIR / f"mlp_{stage}.ir"


def main() -> None:
    program = reference_program()
    for stage in STAGES:
        path = golden_path(stage)
        path.write_text(program.dump(stage))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
