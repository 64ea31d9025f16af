"""Reference trainers of the published methods that cals-bench ships (IAML; CALS), built on the shared
training engine :mod:`cals_bench.train`. Each sub-package holds its networks, losses, the training task it
registers and its built-in configs (``configs/*.yaml``, packaged with the wheel)."""
