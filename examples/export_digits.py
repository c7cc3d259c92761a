"""Train a digit classifier, export it to C, and run it from a C program.

    python examples/export_digits.py build

writes build/digits.h and build/digits.o (the model with its trained
weights, and a training step), build/digits_test.bin (the held-out digits)
and, where a C compiler is installed, builds and runs examples/c/digits.c
against them: inference with the baked-in weights, then fine-tuning in C.
"""

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import ember
from ember import nn, optim

SOURCE = Path(__file__).parent / "c" / "digits.c"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="where to write the export and the C program")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3), batch_size=32, seed=0)
    prog.fit(x_train, y_train, epochs=args.epochs, progress=False)
    accuracy = float(np.mean(prog.predict(x_test).argmax(axis=1) == y_test))
    print(f"trained in Python: accuracy {accuracy:.4f} on {len(y_test)} digits")

    for path in prog.export(args.directory, "digits", train=True):
        print(f"wrote {path}")
    data = args.directory / "digits_test.bin"
    with open(data, "wb") as f:
        f.write(np.int64(len(y_test)).tobytes() + x_test.tobytes() + y_test.astype(np.int64).tobytes())

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        print("no C compiler found: build the C program yourself (see examples/c/digits.c)")
        return
    program = args.directory / "digits"
    objects = [str(SOURCE), str(args.directory / "digits.o")]
    subprocess.run([compiler, "-O2", "-I", str(args.directory), "-o", str(program), *objects, "-lm"], check=True)
    print(subprocess.run([str(program), str(data)], check=True, capture_output=True, text=True).stdout, end="")


if __name__ == "__main__":
    main()
