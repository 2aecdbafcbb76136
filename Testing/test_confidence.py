"""PHD-Net confidence: Candidate Smoothing, calibration rule, flags, network and bundled model.

Candidate Smoothing is checked on constructed heatmaps/displacements whose answer is known
from the construction (patch ``(py, px)`` is centred at pixel ``(8 px + 3.5, 8 py + 3.5)``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from CardiacLandmarksLib.confidence.phdnet import (
    CalibrationError,
    PhdNetConfidence,
    agreement_confidence,
    calibrate_threshold,
    candidate_smoothing,
    consistency_gate,
    flags_from_confidence,
    map_support,
    normalise_confidence,
    reliability,
)
from CardiacLandmarksLib.core.errors import InvalidImageError, ModelIntegrityError
from CardiacLandmarksLib.models.phdnet import PHDNet, count_parameters, inverse_log_scale, log_scale
from CardiacLandmarksLib.sax.rvi_segmentation import locate
from CardiacLandmarksLib.training.train_phdnet import phdnet_targets

G = 24  # patches per side of a 192 px canvas


def centre(p: int) -> float:
    return 8 * p + 3.5


def votes_to(target_xy, g=G) -> np.ndarray:
    """Displacement field ``[2, g, g]`` from every patch centre to ``target_xy``."""
    py, px = np.mgrid[0:g, 0:g]
    return np.stack([target_xy[0] - centre(px), target_xy[1] - centre(py)]).astype(np.float32)


def blob(py: float, px: float, sigma: float = 1.0, peak: float = 1.0, g=G) -> np.ndarray:
    yy, xx = np.mgrid[0:g, 0:g]
    return (peak * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * sigma**2))).astype(np.float32)


def test_votes_land_at_sub_patch_position():
    target = (101.3, 83.7)  # inside patch (px=12, py=10), off its centre (99.5, 83.5)
    hm = blob(10, 12)[None, None]
    disp = votes_to(target)[None, None]
    res = candidate_smoothing(hm, disp)
    assert res.xy.shape == (1, 1, 2) and res.confidence.shape == (1, 1)
    assert np.allclose(res.xy[0, 0], target, atol=0.35)
    # the naive answer (heatmap peak = patch centre) is ~1.8 px away: smoothing really used the votes
    assert np.linalg.norm(np.array(target) - (centre(12), centre(10))) > 1.5


def test_decoy_heatmap_peak_without_vote_consensus_loses():
    # one strong patch (decoy) at patch (8, 8); its neighbours are weaker but every patch votes
    # for a point 12 px away from the decoy's centre
    hm = blob(8, 8, sigma=1.2, peak=0.7)
    hm[8, 8] = 1.0
    true_xy = (centre(8) + 9.0, centre(8) + 8.0)
    disp = votes_to(true_xy)
    rng = np.random.default_rng(0)
    disp[:, 8, 8] = rng.uniform(-30, 30, 2)  # the decoy patch itself votes somewhere else
    res = candidate_smoothing(hm[None, None], disp[None, None])
    decoy_xy = np.array([centre(8), centre(8)])
    assert np.linalg.norm(res.xy[0, 0] - true_xy) < 1.0
    assert np.linalg.norm(res.xy[0, 0] - decoy_xy) > 10.0


def test_region_with_highest_summed_activation_wins_over_single_peak():
    hm = np.zeros((G, G), np.float32)
    hm[3, 3] = 1.0  # isolated strongest patch, summed activation 1.0
    hm += blob(16, 18, sigma=1.0, peak=0.6)  # broad region, summed activation ~ 2 pi 0.6 ~ 3.8
    target_a, target_b = (centre(3), centre(3)), (centre(18) + 2.0, centre(16) - 3.0)
    disp = np.where(np.arange(G)[None, :, None] < 10, votes_to(target_a), votes_to(target_b))
    res = candidate_smoothing(hm[None, None], disp[None, None])
    assert np.linalg.norm(res.xy[0, 0] - target_b) < 1.0


def test_consensus_raises_confidence_and_batches_are_independent():
    hm = blob(12, 12, sigma=1.2)
    target = (centre(12) + 1.0, centre(12) - 2.0)
    good = votes_to(target)
    rng = np.random.default_rng(1)
    scattered = good + rng.normal(0, 6.0, good.shape).astype(np.float32)
    # batch of 2 images x 2 landmarks, arranged so every (image, landmark) differs
    hms = np.stack([np.stack([hm, hm]), np.stack([hm, hm * 0.3])])
    disps = np.stack([np.stack([good, scattered]), np.stack([scattered, good])])
    res = candidate_smoothing(hms, disps, return_maps=True)
    assert res.maps.shape == (2, 2, 192, 192)
    conf = res.confidence
    assert conf[0, 0] > 2 * conf[0, 1]  # same heatmap: consensus beats scatter
    assert conf[0, 1] == pytest.approx(conf[1, 0], rel=1e-5)  # identical inputs, identical outputs
    assert conf[1, 1] < conf[0, 0]  # weaker heatmap, same votes: lower confidence
    assert np.all((conf >= 0) & (conf <= 1))
    assert np.allclose(res.xy[0, 0], target, atol=0.35)


def test_candidate_smoothing_rejects_bad_shapes_and_handles_empty():
    with pytest.raises(ValueError):
        candidate_smoothing(np.zeros((1, 3, G, G)), np.zeros((1, 3, G, G)))
    res = candidate_smoothing(np.zeros((0, 3, G, G)), np.zeros((0, 3, 2, G, G)))
    assert res.xy.shape == (0, 3, 2) and res.confidence.shape == (0, 3)


def test_map_support_reads_the_map_near_a_point():
    maps = np.zeros((1, 2, 50, 50), np.float32)
    maps[0, 0, 20, 30] = 0.8  # (x=30, y=20)
    maps[0, 1, 5, 5] = 0.5
    pts = np.array([[[31.0, 21.0], [40.0, 40.0]]])
    s = map_support(maps, pts, radius=2.0)
    assert s[0, 0] == pytest.approx(0.8) and s[0, 1] == 0.0
    assert map_support(maps, np.array([[[np.nan, np.nan], [5.0, 5.0]]]), 1.0).tolist() == [[0.0, 0.5]]


def test_agreement_confidence_decays_with_distance():
    conf = np.array([[0.8, 0.8, 0.5]])
    phd_xy = np.array([[[10.0, 10.0], [10.0, 10.0], [50.0, 50.0]]])
    xy = np.array([[[10.0, 10.0], [12.0, 10.0], [np.nan, np.nan]]])  # 0 px, 2 px (= 3 mm), missing
    a = agreement_confidence(conf, phd_xy, xy, sigma_mm=3.0, mm_per_px=1.5)
    assert a[0, 0] == pytest.approx(0.8)
    assert a[0, 1] == pytest.approx(0.8 * np.exp(-0.5))  # one sigma away
    assert a[0, 2] == 0.0


def test_calibration_rule_on_constructed_errors():
    errors = np.arange(1.0, 21.0)  # 20 predictions -> the 2 least accurate: errors 20 and 19
    conf = np.full(20, 0.9)
    conf[19], conf[18] = 0.1, 0.4
    rng = np.random.default_rng(0)
    perm = rng.permutation(20)  # order must not matter
    t = calibrate_threshold(conf[perm], errors[perm])
    assert t == pytest.approx((20 * 0.1 + 19 * 0.4) / 39)
    # 15 predictions: 10% = 1.5 -> the 2 worst
    assert calibrate_threshold(conf[5:], errors[5:]) == pytest.approx((20 * 0.1 + 19 * 0.4) / 39)
    # 9 predictions -> at least one
    assert calibrate_threshold([0.3] * 8 + [0.05], list(range(1, 9)) + [50.0]) == pytest.approx(0.05)


@pytest.mark.parametrize("conf,err,frac", [([], [], 0.1), ([0.5, 0.2], [1.0], 0.1), ([0.5], [np.nan], 0.1), ([0.5], [1.0], 0.0)])
def test_calibration_rejects_bad_input(conf, err, frac):
    with pytest.raises(CalibrationError):
        calibrate_threshold(conf, err, frac)


def test_flags_absent_stays_absent():
    conf = np.array([[0.9, 0.2, 0.99], [0.5, 0.5, 0.0]])
    found = np.array([[True, True, False], [True, True, False]])
    flags = flags_from_confidence(conf, found, [0.4, 0.6, 0.1])
    assert flags.tolist() == [["high", "low", "absent"], ["high", "low", "absent"]]


def test_normalised_confidence_is_half_at_threshold():
    raw = np.array([[0.04, 0.2, 0.0], [0.01, 0.4, 1.0]])
    n = normalise_confidence(raw, [0.04, 0.1, 0.5])
    assert n[0, 0] == pytest.approx(0.5) and n[0, 1] == pytest.approx(2 / 3) and n[0, 2] == 0.0
    assert n[1, 2] == pytest.approx(2 / 3)
    assert np.array_equal(n > 0.5, raw > np.array([0.04, 0.1, 0.5]))


def test_reliability_counts():
    errors = np.array([1.0, 2.0, 6.0, 12.0, 3.0, 11.0, 7.0, 1.0])
    high = np.array([True, True, True, False, False, False, True, True])
    r = reliability(errors, high)
    assert r["n_high"] == 5 and r["n_low"] == 3
    assert r["p_err_gt_5mm_given_high"] == pytest.approx(2 / 5)
    assert r["p_err_gt_5mm_given_low"] == pytest.approx(2 / 3)
    assert r["n_gross"] == 2 and r["gross_flagged_low_fraction"] == 1.0


def test_network_shapes_and_size():
    net = PHDNet(3).eval()
    hm, disp = net(torch.zeros(2, 1, 192, 160))
    assert hm.shape == (2, 3, 24, 20) and disp.shape == (2, 3, 2, 24, 20)
    n = count_parameters(net)
    assert 30_000 < n < 120_000  # the paper's network: ~0.06 M parameters
    with pytest.raises(ValueError):
        net(torch.zeros(1, 1, 100, 100))
    d = torch.tensor([-150.0, -2.5, 0.0, 0.3, 80.0])
    assert torch.allclose(inverse_log_scale(log_scale(d)), d, atol=1e-4)


def test_targets_on_a_patch_centre_and_absent():
    pts = torch.tensor([[[centre(4), centre(7)], [float("nan"), float("nan")]]])  # x=centre(4), y=centre(7)
    hm, disp, w = phdnet_targets(pts, 64, sigma_hm_px=8.0, sigma_disp_px=16.0)
    assert hm.shape == (1, 2, 8, 8) and disp.shape == (1, 2, 2, 8, 8)
    assert hm[0, 0, 7, 4] == pytest.approx(1.0) and hm[0, 0].argmax() == 7 * 8 + 4
    assert hm[0, 0, 7, 5] == pytest.approx(np.exp(-64 / 128))  # 8 px away, sigma 8 px
    assert torch.all(disp[0, 0, :, 7, 4] == 0)
    # patch (py=7, px=5) is 8 px right of the landmark: displacement (-8, 0), log-scaled
    assert disp[0, 0, 0, 7, 5] == pytest.approx(-np.log1p(8.0)) and disp[0, 0, 1, 7, 5] == 0
    assert float(hm[0, 1].abs().sum()) == 0 and float(w[0, 1].sum()) == 0


def _write_model(tmp_path, tamper: bool = False, gate_mm: float | None = None, high: float = 0.5):
    from CardiacLandmarksLib.models.loader import sha256_file

    torch.manual_seed(0)
    net = PHDNet(3)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "sax_phdnet.pt")
    card = {"name": "sax_phdnet", "version": "test", "landmarks": ["A-RVI", "I-RVI", "C-LV"],
            "architecture": {"n_landmarks": 3, "in_channels": 1, "width": 32, "n_deep": 3, "head_widths": [64, 96]},
            "thresholds": {"found": {"A-RVI": 0.0, "I-RVI": 0.0, "C-LV": 0.0},
                           "high_confidence": {"A-RVI": high, "I-RVI": high, "C-LV": high}},
            "shipped": {"mode": "agreement", "agreement_sigma_mm": 3.0,
                        **({} if gate_mm is None else {"max_disagreement_mm": gate_mm})},
            "sha256": "0" * 64 if tamper else sha256_file(tmp_path / "sax_phdnet.pt")}
    (tmp_path / "sax_phdnet.json").write_text(json.dumps(card))


def test_model_load_checks_integrity(tmp_path):
    with pytest.raises(ModelIntegrityError):
        PhdNetConfidence.load("cpu", models_dir=tmp_path)
    _write_model(tmp_path, tamper=True)
    with pytest.raises(ModelIntegrityError):
        PhdNetConfidence.load("cpu", models_dir=tmp_path)


def test_assess_contract(tmp_path):
    _write_model(tmp_path)
    phd = PhdNetConfidence.load("cpu", models_dir=tmp_path)
    rng = np.random.default_rng(0)
    images = rng.random((4, 192, 192), dtype=np.float32)
    pos = rng.uniform(20, 170, (4, 3, 2))
    found = np.array([[True, True, False]] * 4)
    res = phd.assess(images, pos, found)
    assert res.confidence.shape == (4, 3) and res.flag.shape == (4, 3) and res.phd_xy.shape == (4, 3, 2)
    assert np.all(res.confidence[:, 2] == 0) and set(res.flag[:, 2]) == {"absent"}
    assert set(res.flag[:, :2].ravel()) <= {"high", "low"}
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))
    # the shipped confidence is PHD-Net's own when the points are PHD-Net's, ~0 far away from them
    own = phd.assess(images, res.phd_xy, np.ones((4, 3), bool))
    assert np.allclose(own.raw, np.clip(res.phd_confidence, 0, 1), atol=1e-6)
    # shown confidence: raw / (raw + threshold), threshold 0.5 in the test card
    assert np.allclose(own.confidence, own.raw / (own.raw + 0.5), atol=1e-6)
    assert np.array_equal(own.flag == "high", own.confidence > 0.5)
    far = phd.assess(images, res.phd_xy + 30.0, np.ones((4, 3), bool))
    assert np.all(far.confidence < 1e-6) and set(far.flag.ravel()) == {"low"}
    with pytest.raises(InvalidImageError):
        phd.assess(np.full((1, 192, 192), np.nan, np.float32))
    with pytest.raises(ValueError):
        phd.assess(images, pos[:, :2], found)


def test_consistency_gate_caps_below_the_threshold_and_falls_with_disagreement():
    conf = np.array([[0.9, 0.9, 0.9, 0.2, 0.9]], np.float32)
    d = np.array([[0.0, 3.0, 6.0, 6.0, np.inf]])
    thr = 0.5
    out = consistency_gate(conf, d, thr, 3.0)
    # within the gate (0 and exactly 3 mm): unchanged; 6 mm: capped at thr * 3/6; already low: unchanged; inf: 0
    assert np.allclose(out, [[0.9, 0.9, 0.25, 0.2, 0.0]])
    flags = flags_from_confidence(out, np.ones(out.shape, bool), thr)
    assert list(flags[0]) == ["high", "high", "low", "low", "low"]
    assert consistency_gate(conf, np.full(d.shape, 12.0), thr, 3.0)[0, 0] < out[0, 2]  # more doubt, lower


def test_assess_gate_flags_self_disagreeing_points_low(tmp_path):
    """With the card's gate, a point PHD-Net agrees with is flagged low when the U-Net disagrees with itself, and
    the shown confidence stays under 0.5 exactly where the flag is low."""
    images = np.random.default_rng(1).random((3, 192, 192), dtype=np.float32)
    _write_model(tmp_path, gate_mm=3.0)
    own = PhdNetConfidence.load("cpu", models_dir=tmp_path).assess(images)  # PHD-Net's own points and confidence
    t = 0.5 * float(own.raw.min())  # a threshold every point of the untrained test net clears
    assert t > 0
    _write_model(tmp_path, gate_mm=3.0, high=t)
    phd = PhdNetConfidence.load("cpu", models_dir=tmp_path)
    found = np.ones((3, 3), bool)
    calm = phd.assess(images, own.phd_xy, found, disagreement_mm=np.zeros((3, 3)))
    assert np.allclose(calm.raw, phd.assess(images, own.phd_xy, found).raw)  # no disagreement: the gate does nothing
    assert set(calm.flag.ravel()) == {"high"}
    dis = np.array([[0.0, 10.0, np.inf]] * 3)
    gated = phd.assess(images, own.phd_xy, found, disagreement_mm=dis)
    assert np.allclose(gated.raw[:, 0], calm.raw[:, 0]) and set(gated.flag[:, 0]) == {"high"}
    assert calm.gated is not None and not calm.gated.any()
    assert np.array_equal(gated.gated, np.array([[False, True, True]] * 3))  # the reason the pipeline reports
    assert set(gated.flag[:, 1:].ravel()) == {"low"}
    assert np.allclose(gated.raw[:, 1], t * 3.0 / 10.0) and np.all(gated.raw[:, 2] == 0)
    assert np.array_equal(gated.flag == "high", gated.confidence > 0.5)
    with pytest.raises(ValueError):
        phd.assess(images, own.phd_xy, found, disagreement_mm=np.zeros((3, 2)))


def _constructed_predictions():
    from CardiacLandmarksLib.datasets.sax import SampleSet
    from CardiacLandmarksLib.evaluation.confidence import SetPredictions

    n = 4
    points = np.full((n, 3, 2), 50.0)
    points[3, 0] = np.nan  # A-RVI absent on the last slice
    present = np.isfinite(points[..., 0])
    samples = SampleSet(np.zeros((n, 8, 8), np.float32), points, present, [("p1", "s", k) for k in range(n)], [None] * n)
    # U-Net offsets along x in px (x 1.5 mm): A-RVI 2, 4, 10, (absent) px; I-RVI 1, 1, 1, 1; C-LV 0
    unet_xy = points.copy()
    unet_xy[3, 0] = 50.0
    unet_xy[:, 0, 0] += [2.0, 4.0, 10.0, 0.0]
    unet_xy[:, 1, 0] += 1.0
    unet_found = np.ones((n, 3), bool)
    conf = np.array([[0.9, 0.9, 0.9], [0.2, 0.9, 0.9], [0.1, 0.9, 0.9], [0.8, 0.9, 0.9]])
    z = np.zeros((n, 3))
    return SetPredictions("test", samples, unet_xy, conf, unet_found, unet_xy, conf, unet_found, z, conf)


def test_table_row_figures_on_constructed_predictions():
    from CardiacLandmarksLib.evaluation.confidence import format_confidence_table, method_row

    pred = _constructed_predictions()
    row = method_row(pred, "agreement", np.array([0.5, 0.5, 0.5]), landmark=0)
    # A-RVI present on 3 slices, errors 3, 6, 15 mm; flagged high only the first (conf 0.9)
    assert row["n_points"] == 3 and row["detection_rate"] == 1.0
    assert row["mean_error_mm"] == pytest.approx(8.0)
    assert row["mean_error_high_mm"] == pytest.approx(3.0)
    assert row["fraction_high"] == pytest.approx(1 / 3)
    assert row["n_gross"] == 1 and row["gross_flagged_low"] == 1.0
    assert row["p_err_gt_5mm_given_high"] == 0.0 and row["p_err_gt_5mm_given_low"] == 1.0
    # the found A-RVI on the slice without one is a false detection, flagged high (conf 0.8)
    assert row["n_false_detections"] == 1 and row["false_detections_flagged_low"] == 0.0
    all_row = method_row(pred, "agreement", np.array([0.5, 0.5, 0.5]))
    assert all_row["n_points"] == 3 + 4 + 4
    assert all_row["mean_error_mm"] == pytest.approx((3 + 6 + 15 + 4 * 1.5 + 0) / 11)
    text = format_confidence_table([all_row, row])
    assert "U-Net+PHD agreement" in text and "8.00" in text


def test_calibrate_methods_uses_the_paper_rule():
    from CardiacLandmarksLib.evaluation.confidence import calibrate_methods

    thr = calibrate_methods(_constructed_predictions())
    # A-RVI: 3 predictions -> the single worst (15 mm, conf 0.1) sets the threshold
    assert thr["agreement"][0] == pytest.approx(0.1)
    assert thr["unet"][2] == pytest.approx(0.9)  # C-LV: all errors 0 -> plain mean of the worst confidence


@pytest.mark.data
@pytest.mark.slow
def test_bundled_confidence_flags_on_real_validation_patients(acdc_dir):
    """Real ACDC validation patients (ED) with the bundled U-Net + PHD-Net: the flag separates good from bad points."""
    from CardiacLandmarksLib.core.config import models_root
    from CardiacLandmarksLib.datasets.sax import acdc_cases, build_samples
    from CardiacLandmarksLib.models.loader import load_model

    if not (models_root() / "sax_phdnet.pt").exists():
        pytest.fail("bundled model Resources/Models/sax_phdnet.pt missing")
    torch.set_num_threads(2)
    unet = load_model("sax", "cpu")
    phd = PhdNetConfidence.load("cpu")
    tr = unet.card["training"]  # v1.4 on: choice + calibration patients (none trained on)
    val = set(tr["val_patients"]) | set(tr.get("calibration_patients", []))
    cases = [c for c in acdc_cases(acdc_dir) if c.patient in val and c.image.name.endswith("_ED.nii.gz")]
    assert len(cases) >= 10
    s = build_samples(cases)
    xy, peak = locate(unet, s.images)
    found = peak >= np.array([unet.card["thresholds"]["found"][n] for n in phd.landmarks])
    res = phd.assess(s.images, xy, found)
    err = np.linalg.norm(xy - s.points, axis=-1) * 1.5
    ok = s.present & found
    high = ok & (res.flag == "high")
    assert 0.4 < high.sum() / ok.sum() < 0.95
    assert err[high].mean() < 0.9 * err[ok].mean()
    assert (err[high] > 5).mean() < 0.5 * (err[ok & ~high] > 5).mean()  # P(>5 mm | high) well below P(>5 mm | low)
    gross = ok & (err > 10)
    assert gross.sum() >= 3 and (gross & ~high).sum() / gross.sum() >= 0.5
    assert np.all(res.flag[~found] == "absent")


@pytest.mark.slow
def test_mirror_disagreement_matches_separate_passes(acdc_dir):
    """``predict_maps(mirror_disagreement=True)`` gives the distance between the heatmap peaks of the image and of
    its mirror image (mapped back, A/I swapped), computed here from two separate passes without TTA, and does not
    change the averaged maps; ``locate_all``'s disagreement is at least that distance in mm."""
    from CardiacLandmarksLib.datasets.sax import acdc_cases, build_samples
    from CardiacLandmarksLib.models.decoding import decode_heatmaps
    from CardiacLandmarksLib.models.loader import load_model
    from CardiacLandmarksLib.sax.rvi_segmentation import locate_all

    torch.set_num_threads(2)
    unet = load_model("sax", "cpu")
    case = next(c for c in acdc_cases(acdc_dir) if c.patient == "patient014" and c.image.name.endswith("_ED.nii.gz"))
    x = build_samples([case], context=True).inputs()
    heat, _, apart = unet.predict_maps(x, True, mirror_disagreement=True)
    assert np.allclose(heat, unet.predict_maps(x, True)[0], atol=1e-6)
    h0 = unet.predict_maps(x, False)[0]
    h1 = unet.predict_maps(np.ascontiguousarray(x[..., ::-1]), False)[0][..., ::-1]
    pair = unet.card["input"]["mirror_tta"]
    order = list(range(h1.shape[1]))
    order[pair[0]], order[pair[1]] = pair[1], pair[0]
    xy0, _ = decode_heatmaps(h0)
    xy1, _ = decode_heatmaps(np.ascontiguousarray(h1[:, order]))
    assert np.allclose(apart, np.linalg.norm(xy0 - xy1, axis=-1), atol=1e-3)
    assert apart.max() > 0  # some slice of a real stack is not mirror-consistent
    assert np.all(unet.predict_maps(x, False, mirror_disagreement=True)[2] == 0)
    located = locate_all(unet, x)
    assert np.all(located.disagreement_mm >= apart * 1.5 - 1e-4)


def test_stack_jump_leaves_out_the_through_plane_part_and_judges_only_points_with_a_neighbour():
    from CardiacLandmarksLib.core.geometry import stack_jump_mm

    n = np.array([0.3, -0.2, 0.93])
    n /= np.linalg.norm(n)
    u = np.cross(n, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)  # an in-plane direction
    b = np.array([10.0, -40.0, 25.0])
    # slice k sits 8 mm further along the (oblique) normal; in plane: 0, 2 mm, then a 10 mm jump, then not found
    pos = np.array([b, b + 8 * n + 2 * u, b + 16 * n + 12 * u, [np.nan] * 3])
    found = np.array([True, True, True, False])
    jumps = stack_jump_mm(pos, found, 5 * n)  # the normal's length does not matter
    assert np.allclose(jumps[:3], [2.0, 2.0, 10.0]) and np.isnan(jumps[3])
    # a found point whose neighbours are both missing is not judged
    assert np.isnan(stack_jump_mm(pos[:3], np.array([False, True, False]), n)).all()
    with pytest.raises(ValueError):
        stack_jump_mm(pos, found, np.zeros(3))
    with pytest.raises(ValueError):
        stack_jump_mm(pos[:, :2], found, n)
