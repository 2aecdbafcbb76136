"""Issue 16: the pieces of the SAX v1.4 training recipe, on real data where the piece reads data.

Partial-label (marginal) losses, domain randomisation, stack-context inputs, the multi-sequence sample builder
(ACDC cine, EMIDEC LGE, mlperf perfusion frames) and the training / choice / calibration split.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from CardiacLandmarksLib.training.augment import domain_randomise, random_affine_batch
from CardiacLandmarksLib.training.losses import (
    gaussian_targets,
    kl_dice_loss,
    partial_kl_dice_loss,
    partial_segmentation_loss,
    presence_loss,
    segmentation_loss,
)


def _heat_logits(rng: np.random.Generator, n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=(n, 4, size, size)).astype(np.float32))


def test_partial_losses_equal_the_full_losses_when_everything_is_labelled():
    rng = np.random.default_rng(0)
    logits = _heat_logits(rng)
    pts = torch.tensor([[[5.0, 6.0], [20.0, 25.0], [16.0, 16.0]]]).repeat(3, 1, 1)
    pts[1, 0] = float("nan")  # an absent A-RVI is still a label
    target = gaussian_targets(pts, 32, 2.5)
    known = torch.ones(3, 3, dtype=torch.bool)
    assert torch.allclose(partial_kl_dice_loss(logits, target, known), kl_dice_loss(logits, target))
    seg = _heat_logits(rng)
    labels = torch.from_numpy(rng.integers(0, 4, (3, 32, 32)))
    assert torch.allclose(partial_segmentation_loss(seg, labels, torch.ones(3, 4, dtype=torch.bool)),
                          segmentation_loss(seg, labels))


def test_unlabelled_landmark_may_take_background_mass_without_penalty():
    """Marginal loss: for an image without RV labels, moving probability between background and the RV-insertion
    channels changes nothing; for a labelled image the same move (RVI where the label says absent) costs."""
    size = 32
    pts = torch.full((1, 3, 2), float("nan"))
    pts[0, 2] = torch.tensor([16.0, 16.0])  # only C-LV present
    target = gaussian_targets(pts, size, 2.5)
    base = torch.zeros(1, 4, size, size)
    base[:, 3] = 4.0  # background
    base[:, 2, 14:19, 14:19] = 8.0  # C-LV peak
    moved = base.clone()
    # put A-RVI mass in a corner: logits chosen so that p(A-RVI) + p(background) stays the same there
    p = torch.softmax(base, 1)
    corner = (slice(None), slice(0, 6), slice(0, 6))
    share = 0.6
    keep = p[:, 3][corner] + p[:, 0][corner]
    logz = torch.logsumexp(base, 1)[corner]
    moved[:, 0][corner] = torch.log(share * keep) + logz
    moved[:, 3][corner] = torch.log((1 - share) * keep) + logz
    assert torch.allclose(torch.softmax(moved, 1)[:, 3][corner] + torch.softmax(moved, 1)[:, 0][corner], keep, atol=1e-5)
    unknown_rv = torch.tensor([[False, False, True]])
    a = partial_kl_dice_loss(base, target, unknown_rv)
    b = partial_kl_dice_loss(moved, target, unknown_rv)
    assert float(abs(a - b)) < 1e-4
    everything = torch.ones(1, 3, dtype=torch.bool)
    assert float(partial_kl_dice_loss(moved, target, everything)) > float(partial_kl_dice_loss(base, target, everything)) + 0.01


def test_presence_loss_is_the_cross_entropy_of_each_heatmap_peak_against_presence():
    # two landmark channels + background on a 2 x 2 image; logits = log(probabilities), so the softmax returns them
    probs = torch.tensor([[[0.8, 0.1], [0.1, 0.1]],   # landmark 0: peak 0.8
                          [[0.1, 0.3], [0.1, 0.1]],   # landmark 1: peak 0.3
                          [[0.1, 0.6], [0.8, 0.8]]])  # background
    logits = probs.log()[None].clone().requires_grad_(True)
    present = torch.tensor([[True, False]])
    loss = presence_loss(logits, present, torch.tensor([[True, True]]))
    assert float(loss.detach()) == pytest.approx((-np.log(0.8) - np.log(1 - 0.3)) / 2, rel=1e-5)
    # an unlabelled landmark (e.g. an RV insertion on EMIDEC LGE) is left out of the mean
    with torch.no_grad():
        only_first = presence_loss(logits, present, torch.tensor([[True, False]]))
        none_known = presence_loss(logits, present, torch.tensor([[False, False]]))
    assert float(only_first) == pytest.approx(-np.log(0.8), rel=1e-5)
    assert float(none_known) == 0.0
    # one gradient step lowers the absent landmark's peak and raises the present one's
    loss.backward()
    with torch.no_grad():
        stepped = torch.softmax(logits - 0.5 * logits.grad, 1)[0]
    assert float(stepped[1].max()) < 0.3
    assert float(stepped[0].max()) > 0.8


def test_unlabelled_rv_class_is_not_penalised_in_the_segmentation_loss():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[:, 6:10, 6:10] = 3  # LV cavity, no RV label in this image
    good = torch.full((1, 4, 16, 16), -5.0)
    good[:, 0] = 5.0
    good[:, 3, 6:10, 6:10] = 10.0
    rv_guess = good.clone()
    rv_guess[:, 1, :, :4] = 10.0  # the network says RV on a strip the label calls background
    no_rv = torch.tensor([[True, False, True, True]])
    full = torch.ones(1, 4, dtype=torch.bool)
    assert float(partial_segmentation_loss(rv_guess, labels, no_rv)) < float(partial_segmentation_loss(good, labels, no_rv)) + 0.01
    assert float(partial_segmentation_loss(rv_guess, labels, full)) > float(partial_segmentation_loss(good, labels, full)) + 0.5


def test_domain_randomisation_keeps_range_and_stack_coherence_and_changes_tissue_contrast():
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(8, 3, 64, 64, dtype=torch.long)
    masks[:, :, 20:44, 20:44] = 2  # myocardium ring
    masks[:, :, 26:38, 26:38] = 3  # LV cavity
    img = torch.full((8, 3, 64, 64), 0.2)
    img[masks == 2] = 0.3
    img[masks == 3] = 1.0  # bright blood, as in cine
    out = domain_randomise(img, masks, g, p_tissue=1.0, p_bias=0, p_resolution=0, p_ringing=0, p_shading=0,
                           p_thickness=0)
    assert out.shape == img.shape and torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.5
    blood = out[:, 0, 30:34, 30:34].mean((-1, -2))
    myo = out[:, 0, 21:24, 21:24].mean((-1, -2))
    ratio = blood / myo.clamp(min=1e-3)
    assert float(ratio.max() / ratio.min()) > 1.5, "the per-tissue remapping must vary blood/myocardium contrast"
    # the neighbours get the same intensity transform as the slice: identical inputs stay alike (noise apart)
    assert float((out[:, 1] - out[:, 0]).abs().mean()) < 0.1
    # the full default augmentation still gives valid inputs
    full = domain_randomise(img, masks, g)
    assert torch.isfinite(full).all() and float(full.max()) <= 1.5


def test_affine_warp_carries_context_channels_and_their_masks():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64)
    m = torch.randint(0, 4, (2, 3, 64, 64))
    pts = torch.full((2, 3, 2), 32.0)
    wx, wp, wm = random_affine_batch(x, pts, 48, g, masks=m)
    assert wx.shape == (2, 3, 48, 48) and wm.shape == (2, 3, 48, 48) and wp.shape == (2, 3, 2)


@pytest.fixture(scope="module")
def real_sets(data_root):
    from CardiacLandmarksLib.datasets.sax import acdc_cases, build_samples, emidec_cases, mlperf_sax_cases

    acdc = [c for c in acdc_cases(data_root / "acdc") if c.patient == "patient001"]
    emidec = emidec_cases(data_root / "lge" / "emidec")
    perf = mlperf_sax_cases(data_root / "perfusion" / "mlperf", ["1132584"], frames_per_series=2)
    return {"acdc": build_samples(acdc, context=True), "emidec": build_samples(emidec[:1], context=True),
            "perfusion": build_samples(perf[:1], context=True), "emidec_cases": emidec}


def test_samples_mark_rv_labels_unknown_where_the_set_has_no_rv(real_sets):
    acdc, emidec, perf = real_sets["acdc"], real_sets["emidec"], real_sets["perfusion"]
    assert acdc.known.all() and acdc.known_classes.all()
    for s, kind in ((emidec, "lge"), (perf, "perfusion")):
        assert not s.known[:, :2].any() and s.known[:, 2].all()  # RV insertions unknown, C-LV known
        assert not s.known_classes[:, 1].any()  # RV cavity unknown
        assert set(s.kinds) == {kind}
        assert s.present[:, 2].any() and not (s.masks == 1).any()
    assert len(perf.images) == 2  # the requested labelled frames of one series


def test_context_channels_are_the_neighbouring_slices_on_the_slice_grid(real_sets, data_root):
    from CardiacLandmarksLib.core.preprocessing import context_canvases, to_canvas
    from CardiacLandmarksLib.io.load import load_series

    series = load_series(data_root / "acdc" / "patient001_ED.nii.gz")
    last = series.n_slices - 1
    c0, _ = context_canvases(series, 0, [0])
    c3, _ = context_canvases(series, 3, [0])
    cl, _ = context_canvases(series, last, [0])
    own = [to_canvas(series, k, [0])[0][0] for k in (0, 2, 3, 4)]
    np.testing.assert_allclose(c3[0, 0], own[2])
    np.testing.assert_allclose(c3[0, 1], own[1])  # slice below (k - 1), same in-plane grid for this stack
    np.testing.assert_allclose(c3[0, 2], own[3])
    np.testing.assert_allclose(c0[0, 1], c0[0, 0])  # no slice below the first: the slice stands in
    np.testing.assert_allclose(cl[0, 2], cl[0, 0])
    acdc = real_sets["acdc"]
    k3 = next(i for i, m in enumerate(acdc.meta) if m[1] == "patient001_ED" and m[2] == 3)
    np.testing.assert_allclose(acdc.inputs()[k3], c3[0], atol=1e-6)


def test_three_way_split_is_disjoint_and_leaves_the_test_splits_out(data_root):
    from CardiacLandmarksLib.datasets.sax import acdc_cases, emidec_cases, three_way_split
    from CardiacLandmarksLib.datasets.splits import is_test_case

    for cases, frac in ((acdc_cases(data_root / "acdc"), 0.2), (emidec_cases(data_root / "lge" / "emidec"), 0.1)):
        parts = [{c.patient for c in p} for p in three_way_split(cases, frac, 0)]
        assert all(parts)
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert not any(is_test_case(p) for part in parts for p in part)
        assert len(parts[0]) > 3 * (len(parts[1]) + len(parts[2])) / 2


def test_mscmr_set_trains_only_and_leave_out_keeps_a_subject_out_of_every_part(data_root):
    """``--sets ...,mscmr`` adds the five MS-CMRSeg LGE stacks (RV labels and real geometry) to training only, each
    ``mscmr_repeat`` times; ``--leave-out`` keeps the named patients out of training, choice and calibration."""
    from CardiacLandmarksLib.datasets.sax import mscmr_cases
    from CardiacLandmarksLib.training.train_sax import TrainConfig, split_sets

    mscmr = mscmr_cases(data_root / "lge" / "mscmr")
    assert len(mscmr) == 5 and all(c.kind == "lge" and c.labels == {"rv": 1, "myo": 2, "lv": 3} for c in mscmr)
    cfg = TrainConfig(sets="acdc,mscmr", mscmr_repeat=3, leave_out="subject8,patient014")
    train, choice, calib, _ = split_sets(data_root / "acdc", cfg)
    ids = [c.patient for c in train if c.patient.startswith("subject")]
    assert sorted(set(ids)) == ["subject1", "subject29", "subject36", "subject41"] and len(ids) == 12
    held = {c.patient for c in choice + calib}
    assert not any(p.startswith("subject") for p in held)
    assert "patient014" not in held | {c.patient for c in train}
    plain = split_sets(data_root / "acdc", TrainConfig(sets="acdc"))
    assert "patient014" in {c.patient for part in plain[:3] for c in part}


def test_single_slice_input_stands_in_for_missing_neighbours():
    from CardiacLandmarksLib.models.loader import LoadedModel

    card3 = {"architecture": {"in_channels": 3, "n_classes": 4}}
    m = LoadedModel("x", "0", "", card3, "cpu", None)
    x = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    out = m.as_model_input(x)
    assert out.shape == (2, 3, 8, 8) and np.array_equal(out[:, 1], x) and np.array_equal(out[:, 2], x)
    m1 = LoadedModel("x", "0", "", {"architecture": {"in_channels": 1, "n_classes": 4}}, "cpu", None)
    assert np.array_equal(m1.as_model_input(np.stack([x, x + 1, x + 2], 1))[:, 0], x)


def test_detection_feeds_each_slice_with_its_stack_neighbours(data_root):
    """The pipeline's inputs (one canvas per slice and phase, reused as neighbours) equal
    core.preprocessing.context_canvases, and what it reports is the model's answer for them; a stack-context
    model answers differently when the neighbours are withheld (it uses them)."""
    from CardiacLandmarksLib.core.preprocessing import context_canvases
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.models.loader import load_model
    from CardiacLandmarksLib.sax.pipeline import detect_landmarks
    from CardiacLandmarksLib.sax.rvi_segmentation import locate

    series = load_series(data_root / "acdc" / "patient101_ED.nii.gz")
    model = load_model("sax", "cpu")
    lms = detect_landmarks(series, model=model, confidence="peak")
    ks = [0, 3, series.n_slices - 1]
    ctx = np.concatenate([context_canvases(series, k, [0])[0] for k in ks])
    xy, peak = locate(model, ctx)
    grid = context_canvases(series, 0, [0])[1]
    for row, k in enumerate(ks):
        for c, name in enumerate(model.card["landmarks"]):
            lm = next(m for m in lms.landmarks if m.slice == k and m.phase == 0 and m.name == name)
            if lm.found and name == "C-LV":  # (A/I names may be swapped by geometry; C-LV is unambiguous)
                np.testing.assert_allclose(grid.ijk_to_canvas(lm.ijk[:2]), xy[row, c], atol=1e-3)
                assert lm.confidence == pytest.approx(float(peak[row, c]), abs=1e-5)
    if model.in_channels > 1:
        alone, _ = locate(model, ctx[:, 0])
        _, peak_alone = locate(model, ctx[:, :1].repeat(3, 1))
        assert np.abs(peak_alone - peak).max() > 1e-3 or np.abs(alone - xy).max() > 0.1


def test_single_slice_checkpoint_starts_a_stack_context_model_that_answers_as_it():
    """Fine-tuning a v1.3 (single-slice) model into a stack-context one: the first convolution's new input
    channels start at zero, so before any training the new model ignores the neighbours and equals the old."""
    from CardiacLandmarksLib.models.unet import UNet2D
    from CardiacLandmarksLib.training.train_sax import load_compatible

    torch.manual_seed(0)
    old = UNet2D(1, 8, 8, 3).eval()
    new = UNet2D(3, 8, 8, 3)
    load_compatible(new, old.state_dict())
    new.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(new(x), old(x[:, :1]), atol=1e-5)
    assert torch.count_nonzero(new.down[0][0].weight[:, 1:]) == 0
