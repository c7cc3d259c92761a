"""Memory planning (compiler/plan.py, compiler/memory.py): workspace slots
sized for their tensors, laid out for each run's sizes."""

import math

import ember
from ember import nn, optim
from ember.compiler.memory import ALIGNMENT, packed_offsets
from ember.compiler.plan import KernelProgram

ROWS = 2 * 10**8


def classifier_programs() -> dict[str, KernelProgram]:
    """The kernel programs (train, predict, gradients, evaluate) of a 4-8-3 classifier."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1))
    return prog._native.programs


def test_a_4_8_3_model_at_2e8_rows_needs_a_workspace_as_large_as_its_data() -> None:
    """Each slot is as large as the largest tensor it holds at the real batch
    size, padded at its start only: a [B,3] float32 tensor takes 12 bytes
    a row, not 64 (which made the training step ask for 95 GiB)."""
    sizes = {"B": ROWS}
    for name, program in classifier_programs().items():
        largest = [0] * len(program.workspace)
        everything = 0
        for value, buffer in program.buffers.items():
            if buffer.region.startswith("workspace:"):
                nbytes = buffer.size.evaluate(sizes)
                slot = int(buffer.region.split(":")[1])
                largest[slot] = max(largest[slot], nbytes)
                everything += nbytes
                assert nbytes == value.type.dtype.itemsize * math.prod(value.type.concrete_shape(sizes))
        _, total = program.workspace_layout(sizes)
        assert total - sum(largest) < 2 * ALIGNMENT * len(largest), name  # start padding, small constant terms
        assert total <= everything, name  # reusing slots only saves
    predict = classifier_programs()["predict"]
    assert predict.workspace_layout(sizes)[1] == 8 * 4 * ROWS  # the hidden activations, f32[B,8]


def test_slots_start_on_aligned_offsets_at_any_size() -> None:
    offsets, total = packed_offsets([12, 64, 1, 0, 100])
    assert offsets == [0, 64, 128, 192, 192]
    assert total == 320
