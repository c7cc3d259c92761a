"""Look inside ember's compiler: print every stage of a small MLP's training
program, from the traced graph to the simplified training step, and the
compile time of each pass.

    python examples/inspect_ir.py
"""

import ember
from ember import nn, optim


def header(title):
    print(f"==== {title} ".ljust(66, "="))


# A model small enough that every stage fits on a screen.
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
program = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1))


# program.stages lists the stages this program has (ember.STAGES lists all);
# dump(stage) is the IR text, which ember.ir.parse reads back.
for stage in program.stages:
    header(stage)
    print(program.dump(stage))

# "simplify" includes the time of the four passes it repeats until nothing changes.
header("compile time per pass")
for name, seconds in program.pass_seconds.items():
    print(f"{name:<16} {seconds * 1e3:7.2f} ms")
