"""Building blocks: weight standardization, the split skip gate, the dynamic head."""

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ccq.models.decoder import SkipGate
from ccq.models.head import apply_dynamic_convs
from ccq.models.layers import WSConv3d, standardize_weight
from ccq.models.rows import Rows


def test_weight_standardization_matches_definition():
    w = torch.randn(4, 3, 3, 3, 3, dtype=torch.float64)
    s = standardize_weight(w)
    flat = s.flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    # unbiased variance, as the official code: std over 81 values with Bessel's correction is 1
    torch.testing.assert_close(flat.var(1), torch.ones(4, dtype=torch.float64))


def test_trained_standardization_has_the_gradient_of_its_forward():
    """The closed-form backward (`_Standardize`) is the gradient of the forward: float64 gradcheck in both layouts,
    and in float32 it matches autograd over the official formulation (`torch.var`) to rounding."""
    w = torch.randn(4, 3, 3, 3, 3, dtype=torch.float64)
    for weight in (w, w.contiguous(memory_format=torch.channels_last_3d)):
        assert torch.autograd.gradcheck(standardize_weight, (weight.clone().requires_grad_(True),))
    w32 = torch.randn(16, 8, 3, 3, 3, requires_grad=True)
    grad = torch.randn(16, 8, 3, 3, 3)
    flat = w32.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    official = (centred / torch.sqrt(centred.var(dim=1, keepdim=True) + 1e-12)).view_as(w32)
    ours = standardize_weight(w32)
    torch.testing.assert_close(ours, official, atol=2e-6, rtol=1e-5)
    (expected,) = torch.autograd.grad(official, w32, grad)
    (got,) = torch.autograd.grad(ours, w32, grad)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)


def test_trained_standardized_weight_keeps_the_channels_last_layout():
    w = torch.randn(8, 4, 3, 3, 3)
    cl = w.contiguous(memory_format=torch.channels_last_3d)
    s = standardize_weight(cl.clone().requires_grad_(True))  # the training path
    assert s.is_contiguous(memory_format=torch.channels_last_3d) and not s.is_contiguous()
    torch.testing.assert_close(s, standardize_weight(w))
    # Without gradient (prediction) the result stays contiguous: the encoder keeps the exacter contiguous GroupNorm.
    assert standardize_weight(cl).is_contiguous() and standardize_weight(w).is_contiguous()


def test_channels_last_encoder_trains_channels_last_after_the_one_channel_stem():
    """A 1-channel input is contiguous and channels-last at once, so the stem's output is contiguous; in training
    the next standardized convolutions must bring the activations back to channels-last (1.12x faster demo steps:
    BENCHMARKS.md), not keep the whole encoder contiguous."""
    from ccq.models import build_model, get_preset

    layout = torch.channels_last_3d
    config = get_preset("tiny", num_tasks=2)
    model = build_model(config).train().to(memory_format=layout)
    skips, _ = model.encoder(torch.randn(2, 1, *config.patch_size).contiguous(memory_format=layout))
    for tensor in skips:  # (the tiny bottleneck's 1x1x1 convolution picks its layout by thread count)
        assert tensor.is_contiguous(memory_format=layout) and not tensor.is_contiguous()


_FROZEN_STEP = """
import torch
from ccq.models import build_model, get_preset
from ccq.models.fused import group_norm, recompute_enabled
from ccq.training.init_from import freeze_parts
from ccq.training.loss import partial_label_loss

torch.manual_seed(0)
layout = torch.channels_last_3d
x = torch.randn(2, 8, 4, 8, 8).contiguous(memory_format=layout)  # needs no gradient; the weight does
w, b = torch.rand(8, requires_grad=True), torch.rand(8, requires_grad=True)
(gw, gb) = torch.autograd.grad(group_norm(x, 4, w, b, 1e-5).square().sum(), (w, b))
w2, b2 = w.detach().requires_grad_(), b.detach().requires_grad_()
(ew, eb) = torch.autograd.grad(torch.nn.functional.group_norm(x.contiguous(), 4, w2, b2, 1e-5).square().sum(), (w2, b2))
torch.testing.assert_close((gw, gb), (ew, eb))
config = get_preset("tiny", num_tasks=2)
for part in ("encoder", "image_transformer", "decoder"):
    for recompute in (True, False):
        model = build_model(config).train().to(memory_format=layout)
        freeze_parts(model, [part])
        image = torch.randn(2, 1, *config.patch_size).contiguous(memory_format=layout)
        target = (torch.rand(2, 2, *config.patch_size) > 0.9).float()
        with recompute_enabled(recompute):
            partial_label_loss(model(image, torch.tensor([0, 1])), target).total.backward()
print("ok")
"""


def test_frozen_parts_train_under_channels_last():
    """PyTorch's CPU GroupNorm backward crashed the process for a channels-last input without gradient and a weight
    with one (a frozen encoder's output entering the trained decoder): `group_norm` avoids that kernel. Run in a
    child process, so that a crash is a failed test and not a dead test runner."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _FROZEN_STEP], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])


def test_ws_conv_caches_only_without_grad_and_refreshes_on_weight_change():
    conv = WSConv3d(2, 3, 3).eval()
    x = torch.randn(1, 2, 4, 4, 4)
    with torch.no_grad():
        a = conv(x)
        assert conv._cache is not None
        conv.weight.copy_(torch.randn_like(conv.weight))  # seen through the version counter
        b = conv(x)
    expected = F.conv3d(x, standardize_weight(conv.weight), None, 1, 1)
    torch.testing.assert_close(b, expected)
    assert not torch.allclose(a, b)
    conv.train()
    conv(x).sum().backward()
    assert conv.weight.grad is not None and conv._cache is None


def test_split_skip_gate_equals_concatenation():
    torch.manual_seed(0)
    gate = SkipGate(8, "attentive", norm_groups=4).eval()
    skip = torch.randn(2, 8, 4, 6, 6)
    low = torch.randn(3 * 2, 8, 2, 3, 3)  # three groups (branches) of two samples each
    up = F.interpolate(low, scale_factor=2.0, mode="trilinear", align_corners=False)
    with torch.no_grad():
        fast = gate(skip, low, Rows.grid(3))
        joined = torch.cat([skip.repeat(3, 1, 1, 1, 1), up], dim=1)
        hidden = F.leaky_relu(gate.conv1(gate.norm1(joined)), 0.1)
        g = torch.sigmoid(gate.conv2(gate.norm2(hidden)))
        reference = up + skip.repeat(3, 1, 1, 1, 1) * g
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


def test_dynamic_convs_equal_grouped_convolution():
    torch.manual_seed(0)
    m, c, out = 3, 8, 2
    feats = torch.randn(m, c, 2, 3, 4)
    sizes_w = [c * c, c * c, c * out]
    sizes_b = [c, c, out]
    params = torch.randn(m, sum(sizes_w) + sum(sizes_b))
    got = apply_dynamic_convs(feats, params, c, out, "relu")
    # reference: the DoDNet formulation with grouped 1x1x1 convolutions
    chunks = torch.split(params, sizes_w + sizes_b, dim=1)
    x = feats.reshape(1, m * c, 2, 3, 4)
    for i in range(3):
        o = c if i < 2 else out
        w = chunks[i].reshape(m * o, -1, 1, 1, 1)
        b = chunks[3 + i].reshape(m * o)
        x = F.conv3d(x, w, b, groups=m)
        if i < 2:
            x = F.relu(x)
    torch.testing.assert_close(got, x.reshape(m, out, 2, 3, 4), atol=1e-5, rtol=1e-5)


def test_recomputing_units_give_the_same_gradients_as_plain_autograd():
    from ccq.models import build_model, get_preset
    from ccq.models.fused import recompute_enabled

    torch.manual_seed(0)
    model = build_model(get_preset("tiny")).double().eval()  # eval: no dropout, so both passes see the same net
    x = torch.rand(2, 1, 16, 32, 32, dtype=torch.float64) * 2 - 1

    def grads(enabled: bool) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with recompute_enabled(enabled):
            (model(x, torch.tensor([1, 4])) ** 2).mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


class _DtypeRecorder(TorchDispatchMode):
    """Records the tensor dtypes that group norm and convolution kernels receive (below autocast's casts)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[torch.dtype, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in ("native_group_norm", "convolution", "convolution_backward"):
            self.calls.append((name, tuple(a.dtype for a in args if isinstance(a, torch.Tensor))))
        return func(*args, **(kwargs or {}))


def test_recomputing_units_under_autocast_match_plain_autograd():
    # Mixed-precision training (bf16/fp16 autocast) recomputes GN -> act in backward, where autocast is off unless
    # the unit re-enters it. On CUDA the forward GN runs in float32 (autocast's cast) and the convolution in bf16;
    # a recomputation outside autocast fed GN a bf16 input with float32 weights and the convolution's backward a
    # float32 weight with bf16 gradients: "expected scalar type BFloat16 but found Float". The CPU kernels accept
    # mixed dtypes, so besides comparing gradients with plain autograd this checks what the kernels receive: in
    # backward the same dtypes as in forward, and one dtype for all of convolution_backward's tensors.
    # (Sizes: torch's CPU bfloat16 conv3d backward is wrong on tiny volumes such as 2x4x4, hence 4x8x8 -> 8x16x16.)
    from ccq.models.fused import norm_act_conv, recompute_enabled, upsample2

    torch.manual_seed(0)
    source = torch.randn(2, 8, 4, 8, 8).to(torch.bfloat16)  # as a previous autocast convolution's output
    gn = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(gn.weight, 1.0, 0.2)
    torch.nn.init.normal_(gn.bias, 0.0, 0.2)
    conv_weight = torch.nn.Parameter(torch.randn(16, 8, 3, 3, 3) * 0.1)
    conv_bias = torch.nn.Parameter(torch.randn(16) * 0.1)
    leaves = [gn.weight, gn.bias, conv_weight, conv_bias]

    def grads(enabled: bool, from_source: bool) -> tuple[list[torch.Tensor], _DtypeRecorder, _DtypeRecorder]:
        x = source.detach().requires_grad_(True)
        for p in leaves:
            p.grad = None
        forward, backward = _DtypeRecorder(), _DtypeRecorder()
        with recompute_enabled(enabled), torch.autocast("cpu", dtype=torch.bfloat16), forward:
            up = upsample2(x)
            z = norm_act_conv(up, gn, conv_weight, conv_bias, padding=1, pre_slope=0.1, post_slope=0.1,
                              source=x if from_source else None)  # fmt: skip
        assert z.dtype == torch.bfloat16  # autocast really was on
        with backward:
            (z.float() ** 2).mean().backward()
        return [x.grad, *(p.grad for p in leaves)], forward, backward

    for from_source in (False, True):
        (recomputed, forward, backward), (plain, _, _) = grads(True, from_source), grads(False, from_source)
        gn_forward = [dtypes for name, dtypes in forward.calls if name == "native_group_norm"]
        gn_backward = [dtypes for name, dtypes in backward.calls if name == "native_group_norm"]
        assert gn_forward and gn_backward == gn_forward
        conv_backward = [dtypes for name, dtypes in backward.calls if name == "convolution_backward"]
        assert conv_backward and all(len(set(dtypes)) == 1 for dtypes in conv_backward), conv_backward
        for a, b in zip(recomputed, plain, strict=True):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-2)


def test_one_sample_convolutions_without_grad_go_to_onednn():
    """PyTorch sends a batch of one with few voxels to its slow reference conv3d; `conv3d` sends it to oneDNN when
    nothing records a gradient, with the same values, and leaves every other case (gradients, FLOP counting,
    1x1x1 kernels) to F.conv3d."""
    from torch.profiler import profile
    from torch.utils.flop_counter import FlopCounterMode

    from ccq.models.fused import conv3d, onednn_for_one_sample

    torch.manual_seed(0)
    x, w = torch.randn(1, 8, 8, 16, 16), torch.randn(8, 8, 3, 3, 3)

    def kernels(fn) -> set[str]:
        with profile() as p:
            fn()
        return {e.key for e in p.key_averages()}

    with torch.inference_mode():
        fast = conv3d(x, w, None, (1, 1, 1), (1, 1, 1))
        assert "aten::mkldnn_convolution" in kernels(lambda: conv3d(x, w, None, (1, 1, 1), (1, 1, 1)))
        assert "aten::slow_conv3d_forward" in kernels(lambda: F.conv3d(x, w, None, (1, 1, 1), (1, 1, 1)))
        with onednn_for_one_sample(False):  # the switch benchmarks/infer_speed.py --pytorch-conv-choice uses
            assert "aten::slow_conv3d_forward" in kernels(lambda: conv3d(x, w, None, (1, 1, 1), (1, 1, 1)))
        torch.testing.assert_close(fast, F.conv3d(x, w, None, 1, 1), atol=1e-4, rtol=1e-5)
        strided = conv3d(x, w, None, (2, 2, 2), (1, 1, 1))
        torch.testing.assert_close(strided, F.conv3d(x, w, None, 2, 1), atol=1e-4, rtol=1e-5)
        counter = FlopCounterMode(display=False)
        with counter:
            conv3d(x, w, None, (1, 1, 1), (1, 1, 1))
        assert counter.get_total_flops() == 2 * 8 * 8 * 27 * 8 * 16 * 16
    leaf = x.clone().requires_grad_(True)
    conv3d(leaf, w, None, (1, 1, 1), (1, 1, 1)).sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == x.shape
