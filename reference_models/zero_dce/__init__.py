"""Zero-DCE training (Guo et al., CVPR 2020) on the shared engine: ``cals-bench train zero-dce``.

- :mod:`cals_bench.reference_models.zero_dce.losses`: the four zero-reference losses (spatial consistency, exposure
  control, colour constancy, illumination smoothness), as the official code computes them;
- :mod:`cals_bench.reference_models.zero_dce.trainer`: the ``zero-dce`` task on the suite's DCE-Net
  (:class:`cals_bench.baselines.zero_dce.ZeroDCENet`, the network of the registered ``zero-dce`` enhancer);
- ``configs/``: built-in training configs.
"""
