"""``python -m cals_bench.train ...``: the ``cals-bench train`` commands, in the form torchrun launches."""

from cals_bench.train.cli import train

if __name__ == "__main__":
    train(prog_name="python -m cals_bench.train")
