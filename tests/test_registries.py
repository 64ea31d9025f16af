"""Every kind of named thing sits on the one Registry (cals_bench.registry): a name taken by one object is
refused to another, lookups fill the registry lazily, and unknown names get the closest ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cals_bench.errors import CalsBenchError


def test_a_second_metric_class_under_psnr_is_refused():
    from cals_bench.metrics import METRICS, Metric, build_metric, register_metric
    from cals_bench.metrics.fidelity import PeakSignalNoiseRatio

    class Impostor(Metric):
        name = "psnr"
        columns = {"psnr": True}

        def score_batch(self, output, reference, contexts):
            return [{"psnr": 99.0} for _ in contexts]

    with pytest.raises(
        ValueError, match="metric name 'psnr' registered twice: .*fidelity:PeakSignalNoiseRatio and"
    ):
        register_metric(Impostor)
    assert METRICS.get("psnr") is PeakSignalNoiseRatio
    assert type(build_metric("psnr")) is PeakSignalNoiseRatio
    assert register_metric(PeakSignalNoiseRatio) is PeakSignalNoiseRatio  # the same class again is harmless
    with pytest.raises(CalsBenchError, match=r"unknown metric 'psnx'; did you mean psnr"):
        build_metric("psnx")


def test_metric_modules_are_imported_on_the_first_lookup_not_with_the_package():
    probe = (
        "import sys, cals_bench.metrics as m\n"
        "before = 'cals_bench.metrics.fidelity' in sys.modules\n"
        "names = m.METRICS.names()\n"
        "print(before, 'cals_bench.metrics.fidelity' in sys.modules, ','.join(names))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    before, after, names = out.stdout.split()
    assert (before, after) == ("False", "True")
    assert {"psnr", "ssim", "lpips", "id_sim", "psnr_gtmean", "ssim_gtmean"} <= set(names.split(","))


def test_a_second_enhancer_class_under_identity_is_refused():
    from cals_bench.enhancer import ENHANCERS, Enhancer, load_enhancer, register_enhancer, registry

    class Impostor(Enhancer):
        def enhance(self, x):
            return x

    sanity_identity = ENHANCERS.get("identity")
    with pytest.raises(ValueError, match="enhancer name 'identity' registered twice: cals_bench.sanity:"):
        register_enhancer("identity")(Impostor)
    assert registry()["identity"].cls is sanity_identity
    assert type(load_enhancer("identity")) is sanity_identity
    assert register_enhancer("identity")(sanity_identity) is sanity_identity  # the same class again


def test_a_second_feature_extractor_under_alexnet_pooled_is_refused():
    from cals_bench.features import FEATURE_EXTRACTORS, AlexNetPooledFeatures, register_extractor

    with pytest.raises(ValueError, match="feature extractor name 'alexnet-pooled' registered twice"):
        register_extractor("alexnet-pooled", lambda: AlexNetPooledFeatures())
    assert FEATURE_EXTRACTORS.get("alexnet-pooled") is AlexNetPooledFeatures
    assert FEATURE_EXTRACTORS.entry_point_group == "cals_bench.feature_extractors"
    with pytest.raises(
        CalsBenchError, match=r"unknown feature extractor 'alexnet-pool'; did you mean alexnet-pooled"
    ):
        FEATURE_EXTRACTORS.get("alexnet-pool")
