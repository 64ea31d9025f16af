"""Example cals-bench plugin (template). The model lives in :mod:`cals_bench_plugin_example.model`."""
