"""Fuzzing (see tests/fuzzing/): differential fuzzing of ember's native
backend against the reference interpreter, and generated calls to the
public API checked against its contract.

    python tests/fuzz.py --minutes 10          # a campaign; ends with "checked N programs, M mismatches"
    python tests/fuzz.py --programs 200 --seed 7
    python tests/fuzz.py --seed 7 --unit 12     # check one unit of that campaign again
    python tests/fuzz.py --replay CASE.npz     # check a saved (shrunk) failing case again
    python tests/fuzz.py --api 10000           # API calls; "checked N calls (R rejected), M contract violations"

A mismatch is reported with its campaign seed and unit, its differences,
and the shrunk graph's IR; the shrunk case is saved for `--replay`. A
contract violation is reported with the shrunk call. The exit status is 1
when anything differed or was violated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# `python tests/fuzz.py` puts tests/ first on sys.path, where the test folder
# tests/ember would hide the ember package: import ember with tests/ out of
# the way, then put tests/ back for the fuzzing helpers.
TESTS = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != TESTS]
import ember  # noqa: E402, F401

sys.path.insert(0, str(TESTS))

from fuzzing.api import check_calls  # noqa: E402
from fuzzing.campaign import check_unit, load_case, run_campaign  # noqa: E402
from fuzzing.check import check  # noqa: E402

from ember.runtime.threads import available_cores  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, help="stop starting new programs after this long")
    parser.add_argument("--programs", type=int, help="stop after checking this many programs")
    parser.add_argument("--seed", type=int, default=0, help="the campaign's seed (default 0)")
    parser.add_argument(
        "--jobs", type=int, default=available_cores(), help="worker processes (default: one per core, here %(default)s)"
    )
    parser.add_argument("--unit", type=int, help="check only this unit of the campaign (as a mismatch report names it)")
    parser.add_argument("--replay", type=Path, help="check one case saved by an earlier campaign")
    parser.add_argument("--save-dir", type=Path, help="where shrunk failing cases go (default: a temporary folder)")
    parser.add_argument("--api", type=int, metavar="CALLS", help="check this many generated calls to the public API")
    parser.add_argument(
        "--backend", default="native", choices=["native", "reference"], help="the backend --api calls (default: native)"
    )
    args = parser.parse_args(argv)
    if args.api is not None:
        start = time.monotonic()
        tally = check_calls(args.api, args.backend, args.seed)
        for violation in tally.violations:
            print(f"contract violated: {violation}")
        print(f"seed {args.seed}, {args.backend} backend: {time.monotonic() - start:.0f} s")
        print(tally.summary())
        return 1 if tally.violations else 0
    if args.replay:
        differences = check(load_case(args.replay))
        for d in differences:
            print(d)
        print(f"{args.replay}: {len(differences)} differences")
        return 1 if differences else 0
    save_dir = args.save_dir or Path(tempfile.mkdtemp(prefix="ember-fuzz-"))
    if args.unit is not None:
        result = check_unit(args.seed, args.unit, save_dir=save_dir)
        print("\n".join(result.lines))
        print(
            f"unit {args.unit} of seed {args.seed}: checked {result.programs} programs, {result.mismatches} mismatches"
        )
        return 1 if result.mismatches else 0
    if args.minutes is None and args.programs is None:
        parser.error("give --minutes or --programs (or --unit, or --replay)")
    start = time.monotonic()
    tally = run_campaign(
        args.seed, args.minutes, args.programs, report=lambda line: print(line, flush=True), save_dir=save_dir
    )
    print(f"seed {args.seed}: {tally.units} units in {time.monotonic() - start:.0f} s on {args.jobs} processes")
    print(tally.summary())
    return 1 if tally.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
