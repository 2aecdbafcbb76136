"""Net2WiderNet widening of a U-Net state (models.unet.widen_state) and its use by SAX fine-tuning
(training.train_sax.load_compatible): issue 16's capacity comparison at an equal recipe starts a base-16 network from
the trained base-8 v1.3.1."""

from __future__ import annotations

import pytest
import torch

from CardiacLandmarksLib.models.unet import UNet2D, base_of, interpolate_states, widen_state
from CardiacLandmarksLib.training.train_sax import WrongModelError, load_compatible


def _trained_like(in_channels=3, n_classes=8, base=4, depth=3):
    """A small U-Net with non-trivial weights and BatchNorm statistics (train-mode passes over random batches)."""
    torch.manual_seed(0)
    net = UNet2D(in_channels, n_classes, base, depth)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
        net.train()
        for _ in range(4):
            net(torch.randn(4, in_channels, 32, 32) * 2 + 0.5)
    return net.eval()


@pytest.mark.parametrize("factor", [2, 3])
def test_wider_network_computes_the_same_function(factor):
    narrow = _trained_like()
    wide = UNet2D(3, 8, 4 * factor, 3)
    wide.load_state_dict(widen_state(narrow.state_dict(), factor))  # strict: every tensor has the wide shape
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        ref = narrow(x)
        torch.testing.assert_close(wide.eval()(x), ref, rtol=1e-4, atol=1e-5)
        # train mode (batch statistics): the copies share their batch statistics too
        torch.testing.assert_close(wide.train()(x), narrow.train()(x), rtol=1e-4, atol=1e-4)
    assert base_of(wide.state_dict()) == 4 * factor


def test_copies_are_not_identical_so_training_separates_them():
    narrow = _trained_like()
    wide_state = widen_state(narrow.state_dict(), 2, seed=1)
    w = wide_state["down.1.0.weight"]  # reads the 8 widened channels of level 0 (4 old channels x 2)
    c = narrow.state_dict()["down.1.0.weight"].shape[1]
    # each weight reading an old channel is split in two shares that sum to it, not halved equally
    torch.testing.assert_close(w[:, :c] + w[:, c:], torch.cat([narrow.state_dict()["down.1.0.weight"]] * 2), rtol=1e-5,
                               atol=1e-6)
    assert not torch.allclose(w[:, :c], w[:, c:])
    # one backward pass: the incoming weights of a channel and of its copy get different gradients
    wide = UNet2D(3, 8, 8, 3)
    wide.load_state_dict(wide_state)
    wide.train()(torch.randn(2, 3, 32, 32)).square().mean().backward()
    g = wide.down[0][0].weight.grad
    assert not torch.allclose(g[:4], g[4:])


def test_no_split_shares_without_jitter_and_bad_arguments():
    narrow = _trained_like()
    even = widen_state(narrow.state_dict(), 2, jitter=0.0)
    w = even["head.weight"]
    torch.testing.assert_close(w[:, :4], w[:, 4:])
    torch.testing.assert_close(w[:, :4] * 2, narrow.state_dict()["head.weight"])
    with pytest.raises(ValueError):
        widen_state(narrow.state_dict(), 0)
    with pytest.raises(ValueError):
        widen_state(narrow.state_dict(), 2, jitter=1.0)


def test_fine_tuning_loads_a_narrow_checkpoint_into_a_wider_model():
    narrow = _trained_like(in_channels=1)  # single-slice start (v1.3.1) into a 3-channel stack-context model
    wide = UNet2D(3, 8, 8, 3)
    load_compatible(wide, narrow.state_dict())
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():  # neighbour channels start at zero weight: the wide model answers the slice as the old one
        torch.testing.assert_close(wide.eval()(torch.cat([x, 2 * x, -x], 1)), narrow(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(WrongModelError):  # base 6 is no multiple of 4: refused by name, not a shape traceback
        load_compatible(UNet2D(3, 8, 6, 3), narrow.state_dict())


def test_interpolation_widens_a_narrow_start_as_fine_tuning_did():
    narrow = _trained_like(in_channels=1)
    wide = UNet2D(3, 8, 8, 3)
    load_compatible(wide, narrow.state_dict())  # the fine-tuning's starting point
    start_as_run = {k: v.clone() for k, v in wide.state_dict().items()}
    with torch.no_grad():
        for p in wide.parameters():
            p.add_(0.05 * torch.randn_like(p))
    at0 = interpolate_states(narrow.state_dict(), wide.state_dict(), 0.0)
    for key, value in start_as_run.items():
        torch.testing.assert_close(at0[key], value)
