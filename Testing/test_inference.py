"""Inference preparation (BatchNorm folding, channels-last layout, small CPU batches) keeps the
networks' outputs: compared against the same weights run as trained (plain eval mode)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from CardiacLandmarksLib.models import loader as inference
from CardiacLandmarksLib.models.phdnet import PHDNet
from CardiacLandmarksLib.models.unet import UNet2D


def _randomised(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine terms (a fresh one is identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return net.eval()


@pytest.mark.parametrize("make", [lambda: UNet2D(1, 4, 8, 3), lambda: PHDNet(3, 1, 16, 1, (16,))])
def test_prepared_net_matches_plain_eval(make):
    torch.manual_seed(0)
    plain = _randomised(make(), 1)
    prepared = inference.prepare_net(copy.deepcopy(plain), "cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    x = torch.randn(5, 1, 64, 64)
    with torch.inference_mode():
        a = plain(x)
        b = prepared(inference.as_input(x[:, 0].numpy(), "cpu"))
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        scale = float(u.abs().max())
        assert float((u - v).abs().max()) <= 1e-4 * max(scale, 1.0)


def test_bundled_model_predictions_do_not_depend_on_batch_size():
    model = inference.load_model("sax", "cpu")
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (11, 192, 192)).astype(np.float32)
    assert model.batch_size == inference.CPU_BATCH
    small = model.predict(images)
    old = model.batch_size
    try:
        model.batch_size = 32
        large = model.predict(images)
    finally:
        model.batch_size = old
    assert small.shape == (11, 4, 192, 192)
    np.testing.assert_allclose(small, large, atol=1e-5)
    np.testing.assert_allclose(small.sum(1), 1.0, atol=1e-5)
