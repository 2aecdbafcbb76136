"""SAX model with a segmentation head: RVI from the predicted segmentation (Xue et al. 2020), fusion with
the heatmap peaks, mask-consistent augmentation, the segmentation loss, fine-tuning from a heatmap-only
checkpoint, and the training command end to end on a few real ACDC patients."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from test_labels import ring_mask

from CardiacLandmarksLib.sax.labels import derive_sax_landmarks
from CardiacLandmarksLib.sax.rvi_segmentation import fuse_positions, landmarks_from_segmentation, locate
from CardiacLandmarksLib.training.augment import random_affine_batch
from CardiacLandmarksLib.training.losses import segmentation_loss


def _one_hot(mask: np.ndarray, n: int = 4) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[mask].transpose(2, 0, 1)


def test_landmarks_from_segmentation_follow_the_label_rule():
    # RV crescent from 150 deg (down-left) to 230 deg (up-left): A-RVI is the 230 deg end
    masks = [ring_mask(rv_from_deg=150, rv_to_deg=230), ring_mask(rv_from_deg=100, rv_to_deg=260, center=(55.0, 62.0))]
    probs = np.stack([_one_hot(m) * 0.7 + 0.075 for m in masks])  # soft, arg-max = the mask
    xy, present = landmarks_from_segmentation(probs)
    assert present.all()
    for n, m in enumerate(masks):
        ref = derive_sax_landmarks(m, rv=1, myo=2, lv=3)
        for c, name in enumerate(("A-RVI", "I-RVI", "C-LV")):
            np.testing.assert_allclose(xy[n, c], ref[name], atol=1e-4)
    c = xy[0, 2]
    ang = np.degrees(np.arctan2(xy[0, 0, 1] - c[1], xy[0, 0, 0] - c[0])) % 360
    assert abs(ang - 230) < 6


def test_landmarks_from_segmentation_absent_and_bad_shape():
    no_rv = ring_mask()
    no_rv[no_rv == 1] = 0
    empty = np.zeros_like(no_rv)
    xy, present = landmarks_from_segmentation(np.stack([_one_hot(no_rv), _one_hot(empty)]))
    assert present.tolist() == [[False, False, True], [False, False, False]]
    assert np.isnan(xy[0, :2]).all() and np.isnan(xy[1]).all()
    with pytest.raises(ValueError, match=r"\[n, 4, H, W\]"):
        landmarks_from_segmentation(np.zeros((2, 3, 8, 8)))


def test_fuse_positions_shares_and_missing_segmentation():
    heat = np.array([[[10.0, 10.0], [20.0, 20.0]]], np.float32)
    seg = np.array([[[14.0, 10.0], [np.nan, np.nan]]], np.float32)
    np.testing.assert_allclose(fuse_positions(heat, seg, 0.0), heat)
    np.testing.assert_allclose(fuse_positions(heat, seg, [1.0, 1.0])[0, 0], [14.0, 10.0])
    np.testing.assert_allclose(fuse_positions(heat, seg, [0.25, 1.0])[0, 0], [11.0, 10.0])
    np.testing.assert_allclose(fuse_positions(heat, seg, 0.5)[0, 1], [20.0, 20.0])  # no segmentation point: heatmap kept


def test_augmentation_moves_masks_with_the_points():
    """Labels drawn around each landmark stay under the warped landmark (rotation, scale, shift, mirror)."""
    n, size = 24, 96
    rng = np.random.default_rng(0)
    centres = rng.uniform(36, 60, (n, 1, 2))
    pts = (centres + np.array([[-15.0, 0.0], [15.0, 0.0], [0.0, 15.0]])).astype(np.float32)  # discs never overlap
    masks = np.zeros((n, size, size), np.int64)
    yy, xx = np.mgrid[0:size, 0:size]
    for b in range(n):
        for c in range(3):
            masks[b][np.hypot(xx - pts[b, c, 0], yy - pts[b, c, 1]) < 4] = c + 1
    imgs = torch.from_numpy(masks.astype(np.float32))[:, None]
    gen = torch.Generator().manual_seed(3)
    warped, new_pts, new_masks = random_affine_batch(imgs, torch.from_numpy(pts), 80, gen, masks=torch.from_numpy(masks),
                                                     swap_pair=None)
    assert new_masks.shape == (n, 80, 80) and new_masks.dtype == torch.int64
    assert set(np.unique(new_masks.numpy())) <= {0, 1, 2, 3}
    checked = 0
    for b in range(n):
        for c in range(3):
            p = new_pts[b, c]
            if torch.isfinite(p).all():
                x, y = int(round(float(p[0]))), int(round(float(p[1])))
                assert int(new_masks[b, y, x]) == c + 1
                assert abs(float(warped[b, 0, y, x]) - (c + 1)) < 0.5  # image and mask warped alike
                checked += 1
    assert checked > 40
    # without masks the call keeps its two-value form
    assert len(random_affine_batch(imgs, torch.from_numpy(pts), 80, gen)) == 2


def test_segmentation_loss_prefers_the_right_labels():
    labels = torch.from_numpy(ring_mask((32, 32), (16.0, 16.0), 5, 9)).long()[None]
    good = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float() * 12.0
    wrong = torch.roll(good, 1, dims=1)
    assert float(segmentation_loss(good, labels)) < 0.05
    assert float(segmentation_loss(wrong, labels)) > 1.0
    assert float(segmentation_loss(torch.zeros_like(good), labels)) > float(segmentation_loss(good, labels))


def test_heatmap_only_checkpoint_initialises_a_model_with_segmentation_head():
    from CardiacLandmarksLib.models.unet import UNet2D
    from CardiacLandmarksLib.training.train_sax import load_compatible

    torch.manual_seed(0)
    old = UNet2D(1, 4, 8, 3)
    new = UNet2D(1, 8, 8, 3)
    before = new.head.weight.detach().clone()
    load_compatible(new, old.state_dict())
    assert torch.equal(new.head.weight[:4], old.head.weight)
    assert torch.equal(new.head.weight[4:], before[4:])
    assert torch.equal(new.down[0][0].weight, old.down[0][0].weight)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(new.eval()(x)[:, :4], old.eval()(x), atol=1e-5)


def test_bundled_model_mirror_tta_is_mirror_consistent():
    """With mirror TTA, a mirrored image gives the mirrored maps: heatmaps with A-RVI/I-RVI swapped,
    segmentation (when the model has one) unchanged in its classes."""
    from CardiacLandmarksLib.models.loader import load_model

    model = load_model("sax", "cpu")
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (3, 192, 192)).astype(np.float32)
    heat, seg = model.predict_maps(images)
    heat_m, seg_m = model.predict_maps(images[..., ::-1].copy())
    np.testing.assert_allclose(heat_m[..., ::-1][:, [1, 0, 2, 3]], heat, atol=1e-5)
    if model.card["architecture"].get("segmentation_classes"):
        np.testing.assert_allclose(seg_m[..., ::-1], seg, atol=1e-5)
        np.testing.assert_allclose(seg.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.predict(images), heat, atol=1e-6)


def test_train_command_with_segmentation_head_on_real_patients(acdc_dir, tmp_path):
    """`train` on 5 real ACDC patients (1 epoch): the card declares the segmentation head and the
    fusion shares, the bundle loads and locates, and `recalibrate` reproduces the card."""
    from CardiacLandmarksLib.models.loader import load_model
    from CardiacLandmarksLib.training.train_sax import TrainConfig, recalibrate, train_sax

    data = tmp_path / "data"
    data.mkdir()
    for pid in ("patient001", "patient002", "patient004", "patient006", "patient007"):
        for f in acdc_dir.glob(f"{pid}_E?*.nii.gz"):
            (data / f.name).symlink_to(f)
    shutil.copy(acdc_dir / "acdc_info.csv", data / "acdc_info.csv")
    out = tmp_path / "run"
    torch.set_num_threads(2)
    card = train_sax(data, out, TrainConfig(epochs=1, batch_size=8, threads=2, ema_decay=0.9), device="cpu", progress=False)
    assert card["architecture"]["segmentation_classes"] == ["background", "RV cavity", "LV myocardium", "LV cavity"]
    assert set(card["segmentation_fusion"]) == {"A-RVI", "I-RVI", "C-LV"}
    # the sets it read: the default sets' EMIDEC and perfusion folders are not beside this folder, so not named
    assert card["training"]["data"] == ("ACDC cine (Bernard et al., IEEE TMI 2018; CC BY-NC-SA 4.0), ED/ES stacks. "
                                        "Fixed test splits (ACDC 20 patients) never seen.")
    # the stray C-LV rule travels with every card the calibration writes (a retrained model keeps it)
    from CardiacLandmarksLib.sax.presence import MAX_CLV_STACK_JUMP_MM

    assert card["thresholds"]["max_clv_stack_jump_mm"] == MAX_CLV_STACK_JUMP_MM
    assert all(w in (0.0, 0.25, 0.5, 0.75, 1.0) for w in card["segmentation_fusion"].values())
    assert card["training"]["val_patients"] and not set(card["training"]["val_patients"]) & set(card["training"]["train_patients"])
    # with a moving average, the average is what is validated and kept
    assert [h["weights"] for h in card["training"]["history"]] == ["ema"] and card["training"]["kept"]["weights"] == "ema"
    assert all(np.isfinite(h["val_score"]) for h in card["training"]["history"])
    # one epoch on 5 patients cannot meet the bundle targets: the card says so (strict JSON, no NaN)
    assert card["bundle_verdict"]["bundle"] is False and card["bundle_verdict"]["reasons"]
    assert "DO NOT BUNDLE" in (out / "sax_unet.md").read_text()
    json.loads((out / "sax_unet.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the card"))
    model = load_model("sax", "cpu", models_dir=out)
    xy, peak = locate(model, np.zeros((2, 192, 192), np.float32))
    assert xy.shape == (2, 3, 2) and peak.shape == (2, 3)
    saved = json.loads((out / "sax_unet.json").read_text())
    again = recalibrate(out / "sax_unet.pt", data)
    assert again["thresholds"] == saved["thresholds"]
    assert again["segmentation_fusion"] == saved["segmentation_fusion"]
    assert again["training"]["history"] == saved["training"]["history"]
    # an older bundle (its checkpoint config predates the weight average) keeps its version and ema_decay 0
    ckpt = torch.load(out / "sax_unet.pt", weights_only=True)
    del ckpt["config"]["ema_decay"]
    torch.save(ckpt, out / "sax_unet.pt")
    (out / "sax_unet.json").write_text(json.dumps({**saved, "version": "1.2.0"}))
    older = recalibrate(out / "sax_unet.pt", data)
    assert older["version"] == "1.2.0" and older["training"]["config"]["ema_decay"] == 0.0
    assert older["thresholds"] == saved["thresholds"]


def test_training_bad_inputs_give_named_errors(tmp_path):
    from CardiacLandmarksLib.core.errors import InputNotFoundError
    from CardiacLandmarksLib.models.unet import UNet2D
    from CardiacLandmarksLib.training.train_sax import (
        TrainConfig,
        WrongModelError,
        load_compatible,
        train_sax,
    )

    with pytest.raises(InputNotFoundError, match="not found"):
        train_sax(tmp_path / "missing", tmp_path / "out", TrainConfig(epochs=1), progress=False)
    with pytest.raises(InputNotFoundError, match="no labelled stacks"):
        train_sax(tmp_path, tmp_path / "out", TrainConfig(epochs=1), progress=False)
    with pytest.raises(WrongModelError, match="base channels"):
        load_compatible(UNet2D(1, 8, 8, 4), UNet2D(1, 4, 12, 4).state_dict())


def test_a_users_folder_keeps_each_patients_phases_together_and_is_named_in_the_card(acdc_dir, tmp_path, caplog,
                                                                                       capsys):
    """`train --data FOLDER` on a user's labelled pairs (`case002_ED.nii.gz` + `case002_ED_gt.nii.gz`, ...) took
    each file's stem as its patient: case002's ED stack could train while its ES stack chose the epoch and set
    the thresholds (the split is by patient so that this never happens). The card's data line also said 'ACDC
    cine (Bernard et al. ...)', the EMIDEC and perfusion sets it had not found, and an ACDC test split that such a
    folder does not have. Now the patient is the name without its ED/ES or frame tag, the card names the folder
    and what it read, and the run says how it split before the first epoch."""
    import logging

    from CardiacLandmarksLib.datasets.sax import paired_cases, patient_of_stem, split_by_patient
    from CardiacLandmarksLib.training.train_sax import TrainConfig, train_sax

    assert [patient_of_stem(s) for s in ("case002_ED", "case002_es", "P1-frame07", "sub_01_phase12", "P1_t5",
                                         "scan", "ED")] == ["case002", "case002", "P1", "sub_01", "P1", "scan", "ED"]
    # an ED/ES word inside the name, which the routing reads as the phase (it was two patients, P7_ED_SA and
    # P7_ES_SA, so the split could put one heart on both sides); a longer word is not one (EDV)
    assert [patient_of_stem(s) for s in ("P7_ED_SA", "P7_ES_SA", "ES_P7", "P7_EDV_1")] == [
        "P7_SA", "P7_SA", "P7", "P7_EDV_1"]
    data = tmp_path / "mine"
    data.mkdir()
    ids = ("001", "002", "004", "006", "007", "008", "009", "011")
    for pid in ids:
        for ph in ("ED", "ES"):
            for tail in ("", "_gt"):
                (data / f"case{pid}_{ph}{tail}.nii.gz").symlink_to(acdc_dir / f"patient{pid}_{ph}{tail}.nii.gz")
    cases = paired_cases(data)
    assert len(cases) == 16 and sorted({c.patient for c in cases}) == [f"case{i}" for i in ids]
    train, held = split_by_patient(cases, 0.25, 0)
    assert len(held) == 4 and not {c.patient for c in train} & {c.patient for c in held}
    torch.set_num_threads(2)
    with caplog.at_level(logging.INFO, logger="CardiacLandmarksLib.progress"):
        card = train_sax(data, tmp_path / "run", TrainConfig(epochs=1, batch_size=8, threads=2, sets="acdc"),
                         device="cpu", progress=True)
    t = card["training"]
    assert not set(t["train_patients"]) & (set(t["val_patients"]) | set(t["calibration_patients"]))
    assert set(t["train_patients"]) | set(t["val_patients"]) <= {f"case{i}" for i in ids}
    assert t["data"] == (f"the labelled stacks of {data} (16 image + NAME_gt mask pairs of 8 patients, the patient "
                         "being the name without its ED/ES or frame tag; label values: 1 RV cavity, 2 LV "
                         "myocardium, 3 LV cavity). No test split of its own: keep patients out with --leave-out "
                         "to test on them.")
    assert f"- Data: {t['data']}" in (tmp_path / "run" / "sax_unet.md").read_text()
    split = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("training "))
    assert split.startswith(f"training {t['n_train_samples']} slice images ({len(t['train_patients'])} patients), "
                            "model choice ")
    # the terms follow the data: the card states them, `models --refresh` copies them into the catalogue (it kept
    # the bundled model's 'CC BY-NC-SA 4.0 (ACDC); also trained on EMIDEC ...'), and warns of a card that says DO
    # NOT BUNDLE (one epoch); recalibrating keeps the folder's data line and terms (it wrote ACDC's)
    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.core.config import models_root
    from CardiacLandmarksLib.models import catalogue
    from CardiacLandmarksLib.training.train_sax import recalibrate

    assert card["licence"] == ("the terms of the site's own labelled stacks it was trained on (the card's training "
                               "data), not ACDC's")
    assert recalibrate(tmp_path / "run" / "sax_unet.pt", data)["training"]["data"] == t["data"]
    assert json.loads((tmp_path / "run" / "sax_unet.json").read_text())["licence"] == card["licence"]
    mdir = tmp_path / "models"
    shutil.copytree(models_root(), mdir)
    for f in ("sax_unet.pt", "sax_unet.json", "sax_unet.md"):
        shutil.copy(tmp_path / "run" / f, mdir / f)
    bundled = catalogue.catalogue(models_root())
    from CardiacLandmarksLib.analysis import unbundled_note

    ran = {"name": "sax_unet", "version": card["version"], "sha256": card["sha256"]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CARDIAC_LANDMARKS_MODELS", str(mdir))
        assert main(["models", "--refresh"]) == 0
        # a detection that finds no LV with such a model says the model may be at fault, not only the image
        assert unbundled_note(ran) == (
            f"; but the model that ran, sax_unet {card['version']}, is one whose own card says DO NOT BUNDLE (its "
            "validation figures missed the targets): the model, not the image, may be at fault (cardiac-landmarks "
            "models lists the bundled ones)")
    assert unbundled_note(ran) == "" and unbundled_note({**ran, "sha256": bundled["sax_unet"].sha256}) == ""
    err = capsys.readouterr().err
    assert "warning: sax_unet 1.4.0: its card says DO NOT BUNDLE (" in err and "sax_unet_lge" not in err
    refreshed = catalogue.catalogue(mdir)
    assert refreshed["sax_unet"].licence == card["licence"]
    assert refreshed["sax_unet_lge"].licence == bundled["sax_unet_lge"].licence  # a bundled card states none
    # the ACDC recipes' sets give the catalogue's own words for the bundled models
    from CardiacLandmarksLib.datasets.sax import Case
    from CardiacLandmarksLib.training.train_sax import training_licence

    def of(*sources):
        return [Case("p", data, data, source=src) for src in sources]

    assert training_licence(of("acdc", "emidec", "perfusion")) == bundled["sax_unet"].licence
    assert training_licence(of("acdc", "emidec", "mscmr", "perfusion")) == bundled["sax_unet_lge"].licence
    assert training_licence(of("acdc")) == "CC BY-NC-SA 4.0 (ACDC)"
    # the README's fine-tune of the bundled model on a site's stacks: its card's training patients are ACDC ids, so
    # every patient here was unseen and went to choice and calibration: nothing to train on, a ValueError traceback
    from CardiacLandmarksLib.core.config import models_root

    tuned = train_sax(data, tmp_path / "tuned", TrainConfig(epochs=1, batch_size=8, threads=2, sets="acdc", lr=5e-4,
                                                            init_weights=str(models_root() / "sax_unet.pt")),
                      device="cpu", progress=False, version="1.7.0-site1")  # a site's name for its model
    assert tuned["version"] == "1.7.0-site1"
    assert json.loads((tmp_path / "tuned" / "sax_unet.json").read_text())["version"] == "1.7.0-site1"
    tuned = tuned["training"]
    assert len(tuned["train_patients"]) >= 4, tuned["train_patients"]
    assert not set(tuned["train_patients"]) & (set(tuned["val_patients"]) | set(tuned["calibration_patients"]))
