"""Bundled perfusion segmentation model (Resources/Models/perfusion_unet.*) on a validation patient.

Validation patients of the bundled model (split by patient, seed 0): 1424200, 1434856, 1450949.
Measured when the model was trained (model card, v1.2.0 with its mirror TTA): myocardium Dice
0.876 +- 0.037, blood pool 0.887, mean boundary distance 1.45 mm over the 12 validation series.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import ModelIntegrityError
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.perfusion import segmentation as ps
from CardiacLandmarksLib.training.train_perfusion import dice, mean_boundary_distance_mm, split_patients


@pytest.fixture(scope="module")
def model():
    return ps.load_model()


def test_card_documents_split_and_metrics(model):
    card = model.card
    tr = card["training"]
    assert set(tr["val_patients"]).isdisjoint(tr["train_patients"])
    # the split is reproducible from the seed
    assert split_patients(tr["train_patients"] + tr["val_patients"], 3, tr["config"]["seed"])[1] == tr["val_patients"]
    assert card["validation"]["dice_myo"]["mean"] >= 0.80
    assert card["sha256"] == model.sha256
    assert ps.model_paths()[0].stat().st_size < 20e6


def test_checksum_mismatch_is_refused(tmp_path):
    w, c = ps.model_paths()
    shutil.copy(w, tmp_path / "perfusion_unet.pt")
    card = json.loads(c.read_text())
    card["sha256"] = "0" * 64
    (tmp_path / "perfusion_unet.json").write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError):
        ps.load_model(tmp_path / "perfusion_unet.pt")


@pytest.mark.parametrize("series", ["1450949_stress_mid", "1424200_rest_base"])
def test_dice_on_validation_patient(model, data_root, series):
    logging.getLogger("CardiacLandmarksLib.io.image").setLevel(logging.WARNING)
    root = data_root / "perfusion" / "mlperf"
    assert series.split("_")[0] in model.card["training"]["val_patients"]
    img = load_series(root / f"{series}.nii.gz")
    gt = np.rint(load_series(root / f"{series}_gt.nii.gz").pixels[:, 0]).astype(int)
    seg = ps.segment_series(model, img.pixels[:, 0], img.spacing[:2])
    frames = np.nonzero(gt.reshape(len(gt), -1).max(1))[0]
    d_myo = [dice(seg.raw_labels[t] == 1, gt[t] == 1) for t in frames]
    d_bp = [dice(seg.raw_labels[t] == 2, gt[t] == 2) for t in frames]
    mbd = [mean_boundary_distance_mm(seg.raw_labels[t] == 1, gt[t] == 1, img.spacing[:2]) for t in frames]
    assert np.mean(d_myo) > 0.80
    # 1450949 stress mid has a small cavity (~75 px at peak contrast): blood-pool Dice 0.73 when written
    assert np.mean(d_bp) > 0.65
    assert np.mean(mbd) < 2.5  # mm, about one pixel
    # C-LV of the reference frame lies inside the expert blood pool of that frame (dilated by a pixel)
    t = seg.reference_frame
    if gt[t].any():
        j, i = np.rint(seg.lv_center_ij[::-1]).astype(int)
        from scipy import ndimage

        assert ndimage.binary_dilation(gt[t] == 2)[j, i]


def test_metrics_on_known_masks():
    a = np.zeros((20, 20), bool)
    a[5:15, 5:15] = True
    b = np.zeros_like(a)
    b[5:15, 7:17] = True
    assert dice(a, b) == pytest.approx(2 * 80 / 200)
    assert dice(a, a) == 1.0
    # boundaries 2 px apart on two sides, equal elsewhere -> distance between 0 and 2 px
    d = mean_boundary_distance_mm(a, b, (1.5, 1.5))
    assert 0.0 < d < 3.0
    assert mean_boundary_distance_mm(a, a, (1.5, 1.5)) == 0.0


def test_flip_tta_axes_follow_the_card():
    assert ps.flip_tta_axes({}) == ()  # v1.0.0's card: one pass
    assert ps.flip_tta_axes({"input": {"flip_tta": ["i", "j"]}}) == (-1, -2)
    assert ps.flip_tta_axes({"input": {"flip_tta": ["i", "j"]}}, tta=False) == ()
    with pytest.raises(ModelIntegrityError):
        ps.flip_tta_axes({"input": {"flip_tta": ["k"]}})


def test_flip_tta_averages_the_mirrored_passes():
    """A network that is not mirror-symmetric (a fixed 3x3 kernel weighting its left and upper
    neighbours): the TTA output is the mean of the plain softmax and the softmax of each mirrored
    image mirrored back, computed here by hand with numpy."""
    import torch

    net = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        net.weight.zero_()
        net.weight[0, 0, 0, 1] = 1.0  # class 0: the pixel above
        net.weight[1, 0, 1, 0] = 2.0  # class 1: twice the pixel to the left
    x = np.random.default_rng(0).random((2, 1, 5, 6)).astype(np.float32)

    def soft(img):  # img [1, j, i] -> softmax [2, j, i], zero padding as the conv
        p = np.pad(img[0], 1)
        logits = np.stack([p[:-2, 1:-1], 2 * p[1:-1, :-2]])
        e = np.exp(logits - logits.max(0))
        return e / e.sum(0)

    want = np.stack([(soft(xi) + soft(xi[:, :, ::-1])[:, :, ::-1] + soft(xi[:, ::-1])[:, ::-1]) / 3 for xi in x])
    got = ps._predict(net, x, flips=(-1, -2))
    np.testing.assert_allclose(got, want, atol=1e-5)
    plain = ps._predict(net, x)
    np.testing.assert_allclose(plain, np.stack([soft(xi) for xi in x]), atol=1e-5)
    assert np.abs(plain - got).max() > 0.05  # the kernel is asymmetric: TTA changes the output


def test_segment_series_mirrors_only_the_segmenter_and_only_when_asked(model, data_root, monkeypatch):
    """The bundled card's ``input.flip_tta`` reaches the segmenter passes; the localiser (trained and
    checked without mirrors) and ``tta=False`` stay single-pass."""
    logging.getLogger("CardiacLandmarksLib.io.image").setLevel(logging.WARNING)
    img = load_series(data_root / "perfusion" / "mlperf" / "1450949_stress_mid.nii.gz")
    calls = []
    real = ps._predict

    def spy(net, x, device="cpu", batch=16, flips=()):
        calls.append((net is model.segmenter, flips))
        return real(net, x, device, batch, flips)

    monkeypatch.setattr(ps, "_predict", spy)
    want = ps.flip_tta_axes(model.card)
    assert want == (-1, -2)  # v1.2.0's card turns the mirrors on
    ps.segment_series(model, img.pixels[:, 0], img.spacing[:2])
    assert {c for c in calls if c[0]} == {(True, want)} and {c for c in calls if not c[0]} == {(False, ())}
    calls.clear()
    ps.segment_series(model, img.pixels[:, 0], img.spacing[:2], tta=False)
    assert {c[1] for c in calls} == {()}
