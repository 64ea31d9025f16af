"""IAML (Mohsen et al., "IAML: Illumination-Aware Mirror Loss for Progressive Learning in Low-Light Image
Enhancement Auto-encoders", 2026): networks, losses and the training task for ``cals-bench train iaml``.

- :mod:`cals_bench.reference_models.iaml.network`: U-Net + CBAM student, teacher decoder;
- :mod:`cals_bench.reference_models.iaml.losses`: MSE, 1 - SSIM, IAML and the two mirror alternatives of the ablation;
- :mod:`cals_bench.reference_models.iaml.trainer`: the ``iaml`` task (config, loss composition, EMA pair);
- ``configs/``: built-in training configs (LOL-v1, LOL-v2 real, clean-image folder, the Table IV ablation).
"""
