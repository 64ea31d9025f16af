"""``python -m cals_bench ...`` runs the command line; under ``torchrun`` every rank runs it (see
:mod:`cals_bench.sharding`): ranks other than 0 keep stdout quiet, rank 0 prints the results."""

from __future__ import annotations

import os
import sys


def _main() -> None:
    from cals_bench import sharding

    if not sharding.is_rank0():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        from cals_bench.cli import main

        main(prog_name="cals-bench")
    finally:
        sharding.shutdown()


if __name__ == "__main__":
    _main()
