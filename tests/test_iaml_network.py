"""IAML networks: shapes, ranges, CBAM, and the teacher (no gradients; starts as and tracks the student)."""

from __future__ import annotations

import pytest
import torch

from cals_bench.reference_models.iaml.losses import illumination_aware_mirror_loss
from cals_bench.reference_models.iaml.network import CBAM, UNetCBAM
from cals_bench.reference_models.iaml.trainer import IAMLConfig, IAMLModel
from cals_bench.train.config import OptimConfig, RuntimeConfig, ScheduleConfig
from cals_bench.train.loop import StepRunner, build_optimizer, build_scheduler

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(**kw) -> IAMLModel:
    torch.manual_seed(0)
    return IAMLModel(IAMLConfig(width=4, depth=3, **kw))


def test_student_any_size_in_range_and_levels():
    net = UNetCBAM(width=4, depth=3)
    x = torch.rand(2, 3, 37, 51)
    y = net(x)
    assert y.shape == x.shape
    assert y.min() >= 0
    assert y.max() <= 1
    out, levels = net.forward_levels(torch.rand(1, 3, 32, 48))
    # depth 3: decoder levels at 1/2 and full resolution, widths 8 and 4, coarse to fine
    assert [tuple(level.shape) for level in levels] == [(1, 8, 16, 24), (1, 4, 32, 48)]
    assert out.shape == (1, 3, 32, 48)


def test_cbam_only_rescales_by_sigmoid_gates():
    cbam = CBAM(8, reduction=2)
    x = torch.randn(2, 8, 9, 9)
    y = cbam(x)
    # channel then spatial gates in (0, 1): every output has the input's sign and a smaller magnitude
    assert torch.all(y.abs() <= x.abs())
    assert torch.all((y * x) >= 0)


def test_teacher_starts_as_student_decoder_and_needs_no_grad():
    m = _model()
    s, t = m.student.decoder.state_dict(), m.teacher_decoder.state_dict()
    assert s.keys() == t.keys()
    assert all(torch.equal(s[k], t[k]) for k in s)
    assert not any(p.requires_grad for p in m.teacher_decoder.parameters())
    assert _model(mirror="none").teacher_decoder is None  # MSE / MSE+SSIM ablation rows: no teacher


def test_teacher_path_is_outside_the_graph():
    m = _model()
    low, clean = torch.rand(2, 3, 32, 32) * 0.2, torch.rand(2, 3, 32, 32)
    clean.requires_grad_(True)
    _, student_levels = m.student.forward_levels(low)
    teacher_levels = m.teacher_levels(clean)
    assert all(t.grad_fn is None and not t.requires_grad for t in teacher_levels)
    illumination_aware_mirror_loss(student_levels, teacher_levels, low, 1.0).backward()
    assert clean.grad is None  # the clean image (teacher input) receives nothing
    assert all(p.grad is None for p in m.teacher_decoder.parameters())
    assert all(p.grad is not None for p in m.student.encoder.parameters())  # the student path does


def test_full_step_gives_teacher_no_gradient_and_ema_tracks_the_student():
    """Five real engine steps; the teacher must equal the closed-form EMA of the student decoder's
    trajectory, computed here independently in float64."""
    momentum = 0.8
    m = _model(ema_momentum=momentum)
    opt = build_optimizer([p for p in m.parameters() if p.requires_grad], OptimConfig(lr=1e-2))
    runner = StepRunner(
        m,
        m,
        opt,
        build_scheduler(opt, ScheduleConfig(steps=10)),
        RuntimeConfig(amp="fp32"),
        0.0,
        torch.device("cpu"),
    )
    expected = {k: v.double().clone() for k, v in m.student.decoder.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        clean = torch.rand(2, 3, 32, 32, generator=g)
        terms, _ = runner.forward_backward(clean * 0.2, clean)
        assert all(p.grad is None for p in m.teacher_decoder.parameters())
        runner.apply()
        for k, v in m.student.decoder.state_dict().items():
            expected[k] = momentum * expected[k] + (1 - momentum) * v.double()
    teacher = m.teacher_decoder.state_dict()
    student = m.student.decoder.state_dict()
    for k in expected:
        # float32 lerp per step vs float64 recursion: a few ulp of values ~0.3 over 5 steps
        torch.testing.assert_close(teacher[k].double(), expected[k], rtol=0, atol=1e-6)
    lag = max(float((teacher[k] - student[k]).abs().max()) for k in student)
    assert lag > 1e-4  # it follows with a lag, it is not a copy
    assert set(terms) == {"loss", "mse", "ssim_loss", "iaml"}


def test_bf16_channels_last_step_matches_fp32_on_cpu():
    """The fast-path switches run on the CPU too: same loss terms as fp32 up to bf16 activations."""
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(2, 3, 32, 32, generator=g)
    results = {}
    for runtime in (RuntimeConfig(amp="fp32"), RuntimeConfig(amp="bf16", channels_last=True)):
        m = _model()
        if runtime.channels_last:
            m.to(memory_format=torch.channels_last)
        opt = build_optimizer([p for p in m.parameters() if p.requires_grad], OptimConfig())
        runner = StepRunner(
            m, m, opt, build_scheduler(opt, ScheduleConfig(steps=2)), runtime, 1.0, torch.device("cpu")
        )
        terms, norm = runner.forward_backward(clean * 0.2, clean)
        runner.apply()
        assert all(p.dtype == torch.float32 for p in m.parameters())  # autocast never changes the weights
        results[runtime.amp] = {**{k: float(v) for k, v in terms.items()}, "grad_norm": float(norm)}
    for key, ref in results["fp32"].items():
        # bf16 keeps 8 bits of mantissa in the network's activations (losses are computed in float32)
        assert results["bf16"][key] == pytest.approx(ref, rel=0.05, abs=1e-4), key
