"""Run under `mpiexec -n N` (all on one host): the gradients' mean over the
ranks in shared memory equals the mean summed in rank order, bit for bit,
on every rank, step after step, for a length no slice boundary divides.
Prints "ok" on rank 0; exits non-zero on a mismatch."""

import sys

import numpy as np

import ember.distributed as dist

LENGTH = 1001


def main() -> int:
    world = dist.init()
    assert world.one_host, world
    means = [world.gradient_mean(LENGTH, dtype) for dtype in (np.float32, np.float64)]
    failed = False
    for step in range(3):
        for mean in means:
            rows = [
                np.random.default_rng([step, r]).standard_normal(LENGTH).astype(mean.local.dtype)
                for r in range(world.size)
            ]
            mean.local[...] = rows[world.rank]
            mean.reduce()
            expected = rows[0].copy()
            for row in rows[1:]:
                expected += row
            expected /= world.size
            failed |= not np.array_equal(mean.mean, expected)
    failed = world.any(failed)
    if world.rank == 0:
        print("MISMATCH" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
