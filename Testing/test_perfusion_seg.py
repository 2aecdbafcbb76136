"""Bundled perfusion segmentation model (Resources/Models/perfusion_unet.*) on a validation patient.

Validation patients of the bundled model (split by patient, seed 0): 1424200, 1434856, 1450949.
Measured when the model was trained (model card): myocardium Dice 0.868 +- 0.040, blood pool
0.889, mean boundary distance 1.50 mm over the 12 validation series.
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
