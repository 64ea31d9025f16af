"""Every kind of named thing sits on the one Registry (cals_bench.registry): a name taken by one object is
refused to another, lookups fill the registry lazily, and unknown names get the closest ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import ClassVar

import pytest

from cals_bench.errors import CalsBenchError


def test_a_second_metric_class_under_psnr_is_refused():
    from cals_bench.metrics import METRICS, Metric, build_metric, register_metric
    from cals_bench.metrics.fidelity import PeakSignalNoiseRatio

    class Impostor(Metric):
        name = "psnr"
        columns: ClassVar[dict[str, bool | None]] = {"psnr": True}

        def score_batch(self, output, reference, contexts):
            return [{"psnr": 99.0} for _ in contexts]

    with pytest.raises(
        ValueError, match=r"metric name 'psnr' registered twice: .*fidelity:PeakSignalNoiseRatio and"
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
    with pytest.raises(ValueError, match=r"enhancer name 'identity' registered twice: cals_bench.sanity:"):
        register_enhancer("identity")(Impostor)
    assert registry()["identity"].cls is sanity_identity
    assert type(load_enhancer("identity")) is sanity_identity
    assert register_enhancer("identity")(sanity_identity) is sanity_identity  # the same class again


PLUGIN = """
from cals_bench.enhancer import Enhancer
from cals_bench.metrics import Metric


class Halve(Enhancer):
    summary = "halves the input"

    def enhance(self, x):
        return x * 0.5


class MeanLevel(Metric):
    name = "demo-mean-level"
    columns = {"demo-mean-level": None}

    def score_batch(self, output, reference, contexts):
        return [{"demo-mean-level": float(v)} for v in output.flatten(1).mean(dim=1)]
"""

TRAIN_PLUGIN = """
from dataclasses import dataclass

from cals_bench.train.sources import register_source
from cals_bench.train.tasks import TrainableModel, register_task


@dataclass(frozen=True)
class NoOptions:
    pass


@register_source("demo-nothing", options=NoOptions, summary="a source that is never built")
def nothing(data, options, data_root, seed):
    raise RuntimeError("not built in this test")


@register_task("demo-task")
class DemoTask(TrainableModel):
    config_cls = NoOptions
"""

PROBE = """
import json, sys
import torch
from cals_bench.enhancer import load_enhancer, registry
from cals_bench.metrics import METRICS, build_metric, metric_registry
from cals_bench.train.sources import SOURCES, get_source
from cals_bench.train.tasks import TASKS, get_task
train_listed = "demo-task" in TASKS.names() and "demo-nothing" in SOURCES.names()
train_imported = "demo_registry_train" in sys.modules
entry = registry()["demo-halve"]
listed = {"origin": entry.origin, "cls": str(entry.cls), "imported": "demo_registry_plugin" in sys.modules}
model = load_enhancer("demo-halve")
out = model.enhance(torch.full((1, 3, 2, 2), 0.8))
value = build_metric("demo-mean-level").score_batch(out, out, [None])[0]["demo-mean-level"]
print(json.dumps({
    **listed, "out": float(out.mean()), "value": value, "after": registry()["demo-halve"].cls.__name__,
    "in_registry": "demo-mean-level" in metric_registry(),
    "train_listed": train_listed, "train_imported": train_imported,
    "task": get_task("demo-task").__name__, "task_origin": TASKS.origin("demo-task"),
    "source": get_source("demo-nothing").summary, "source_origin": SOURCES.origin("demo-nothing"),
}))
"""


def test_entry_points_of_every_kind_are_listed_and_imported_only_when_used(tmp_path):
    (tmp_path / "demo_registry_plugin.py").write_text(PLUGIN)
    (tmp_path / "demo_registry_train.py").write_text(TRAIN_PLUGIN)
    info = tmp_path / "demo_registry_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-registry-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[cals_bench.enhancers]\ndemo-halve = demo_registry_plugin:Halve\n\n"
        "[cals_bench.metrics]\ndemo-mean-level = demo_registry_plugin:MeanLevel\n\n"
        "[cals_bench.tasks]\ndemo-task = demo_registry_train:DemoTask\n\n"
        "[cals_bench.sources]\ndemo-nothing = demo_registry_train:nothing\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {
        "origin": "entry point demo_registry_plugin:Halve",
        "cls": "None",
        "imported": False,  # listed without importing the plugin
        "out": pytest.approx(0.4),
        "value": pytest.approx(0.4),
        "after": "Halve",
        "in_registry": True,
        "train_listed": True,
        "train_imported": False,
        "task": "DemoTask",
        "task_origin": "entry point demo_registry_train:DemoTask",
        # the entry point names the decorated function; what its import registered is the source
        "source": "a source that is never built",
        "source_origin": "entry point demo_registry_train:nothing",
    }


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


def test_a_second_training_task_or_source_under_a_taken_name_is_refused():
    from cals_bench.train.sources import SOURCES, NoOptions, protocol_source, register_source
    from cals_bench.train.tasks import TASKS, TrainableModel, get_task, register_task

    iaml = get_task("iaml")

    class Impostor(TrainableModel):
        pass

    with pytest.raises(ValueError, match=r"training task name 'iaml' registered twice: .*trainer:"):
        register_task("iaml")(Impostor)
    assert TASKS.get("iaml") is iaml
    assert iaml.task == "iaml"

    def other(data, options, data_root, seed):
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="training data source name 'protocol' registered twice"):
        register_source("protocol", options=NoOptions)(other)
    assert SOURCES.get("protocol").build is protocol_source
    # the same function with the same options again is harmless (a module imported twice)
    summary = SOURCES.get("protocol").summary
    assert register_source("protocol", options=NoOptions, summary=summary)(protocol_source) is protocol_source


def test_report_presentation_comes_from_the_metric_class():
    from cals_bench.cli import _diagnostic_metrics
    from cals_bench.metrics import METRICS, Metric, register_metric
    from cals_bench.metrics.base import ColumnFormat
    from cals_bench.metrics.fidelity import PeakSignalNoiseRatio
    from cals_bench.metrics.identity import IdentitySimilarity
    from cals_bench.report.formatting import diagnostic_columns, fmt_ci, fmt_value, metric_label

    assert PeakSignalNoiseRatio.column_format("psnr") == ColumnFormat("PSNR", unit="dB", decimals=2)
    assert IdentitySimilarity.column_format("id_sim_input") == ColumnFormat("ID sim (input)", decimals=4)
    assert (metric_label("psnr"), metric_label("ssim_gtmean"), metric_label("id_sim")) == (
        "PSNR",
        "SSIM (GT-mean)",
        "ID sim",
    )
    assert (fmt_value(23.456, metric="psnr"), fmt_value(0.5, metric="ssim")) == ("23.46", "0.5000")
    assert fmt_value(9.5, metric="psnr") == "9.50"  # the metric's decimals, not the magnitude rule (9.5000)
    assert diagnostic_columns() == ("psnr_gtmean", "ssim_gtmean")
    assert _diagnostic_metrics() == ("psnr_gtmean", "ssim_gtmean")  # what `run --with-gtmean` adds

    @register_metric
    class Brightness(Metric):
        name = "test-brightness"
        columns: ClassVar[dict[str, bool | None]] = {"test-brightness": None, "test-brightness_input": None}
        column_formats: ClassVar[dict[str, ColumnFormat]] = {
            "test-brightness": ColumnFormat("Brightness", unit="%", decimals=1)
        }
        diagnostic = True

        def score_batch(self, output, reference, contexts):
            return [{"test-brightness": 0.0, "test-brightness_input": 0.0} for _ in contexts]

    try:
        assert metric_label("test-brightness") == "Brightness"
        assert metric_label("test-brightness_input") == "test-brightness_input"  # none declared: its name
        assert fmt_value(12.345, metric="test-brightness") == "12.3"
        assert fmt_value(12.345, metric="test-brightness_input") == "12.35"  # by magnitude
        assert fmt_ci(1.04, 2.26, 1.5, metric="test-brightness") == "[1.0, 2.3]"
        assert diagnostic_columns() == (
            "psnr_gtmean",
            "ssim_gtmean",
            "test-brightness",
            "test-brightness_input",
        )
        assert _diagnostic_metrics() == ("psnr_gtmean", "ssim_gtmean", "test-brightness")
    finally:
        METRICS.unregister("test-brightness")
    assert metric_label("test-brightness") == "test-brightness"
    assert diagnostic_columns() == ("psnr_gtmean", "ssim_gtmean")
