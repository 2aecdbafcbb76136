"""Weight-space interpolation of a fine-tuned SAX U-Net and its starting checkpoint (models.unet.interpolate_states,
training.train_sax.interpolate_sax): the SAX model v1.5.0 was v1.3.1 and v1.4.0 at alpha 0.5; v1.7.0 is v1.3.1 and
v1.4.0's recipe with the presence loss at alpha 0.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from CardiacLandmarksLib.models.unet import UNet2D, interpolate_states, transfer_state


def _nets():
    torch.manual_seed(0)
    single = UNet2D(1, 8, 4, 2)  # a single-slice starting model
    context = UNet2D(3, 8, 4, 2)  # fine-tuned with stack context: first convolution has 3 input channels
    transfer_state(context, single.state_dict())
    with torch.no_grad():  # "fine-tuning": every weight moves, the neighbour channels leave zero
        for p in context.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return single, context


def test_end_points_and_midpoint():
    single, context = _nets()
    s, c = single.state_dict(), context.state_dict()
    at0 = interpolate_states(s, c, 0.0)
    at1 = interpolate_states(s, c, 1.0)
    mid = interpolate_states(s, c, 0.5)
    for key, value in c.items():
        torch.testing.assert_close(at1[key], value)
        if not value.is_floating_point():
            assert torch.equal(mid[key], value)
            continue
        torch.testing.assert_close(mid[key], (at0[key] + value) / 2)
    # alpha 0 is the starting model as the stack-context architecture runs it: slice channel = the old weights,
    # neighbour channels zero, so it answers a 3-channel input exactly as the old model answers the slice
    w0 = at0["down.0.0.weight"]
    torch.testing.assert_close(w0[:, :1], s["down.0.0.weight"])
    assert torch.count_nonzero(w0[:, 1:]) == 0
    net = UNet2D(3, 8, 4, 2)
    net.load_state_dict(at0)
    single.eval()
    net.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), single(x[:, :1]))


def test_refuses_other_architectures_and_alpha_outside_0_1():
    single, context = _nets()
    with pytest.raises(ValueError, match="alpha"):
        interpolate_states(single.state_dict(), context.state_dict(), 1.5)
    other = UNet2D(3, 8, 4, 3).state_dict()  # one level deeper: other tensors
    with pytest.raises(ValueError, match="same tensors"):
        interpolate_states(other, context.state_dict(), 0.5)
    wider = UNet2D(3, 8, 8, 2).state_dict()  # same names, other shapes
    with pytest.raises(ValueError, match="shapes"):
        interpolate_states(wider, context.state_dict(), 0.5)


def test_bundled_sax_model_records_its_interpolation():
    from CardiacLandmarksLib.models.loader import read_card

    card = read_card("sax_unet")
    rec = card["training"]["interpolation"]
    assert rec["alpha"] == 0.5 and "v1.3.1" in rec["start"]
    assert "v1.4.0 recipe + presence loss, weight 1" in rec["finetuned"]
    assert card["version"] == "1.7.0" and card["training"]["config"]["presence_weight"] == 1.0
    # chosen and calibrated on patients none of the three models trained on, none of the fixed test split
    from CardiacLandmarksLib.datasets.splits import is_test_case

    held = set(card["training"]["calibration_patients"]) | set(card["training"]["val_patients"])
    assert not held & set(card["training"]["train_patients"])
    assert not any(is_test_case(p) for p in held)
    assert np.isfinite(card["thresholds"]["found_pair"])
