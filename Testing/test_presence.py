"""RV insertions decided as a pair (sax.presence): the rule, its threshold fit, and the shipped card using it."""

from __future__ import annotations

import numpy as np

from CardiacLandmarksLib.sax.presence import (
    MAX_CLV_STACK_JUMP_MM,
    MIN_LV_AREA_MM2,
    calibrate_pair_threshold,
    card_max_clv_jump,
    card_min_lv_area,
    card_pair_threshold,
    decide_presence,
    pair_score,
    youden_threshold,
)

NAMES = ("A-RVI", "I-RVI", "C-LV")


def test_pair_found_together_where_one_alone_would_be_missing():
    # slice 0: A-RVI sure, I-RVI unsure (mean 0.6): one at a time finds A only; the pair finds both
    # slice 1: both weak (mean 0.35): neither; slice 2: A-RVI alone above its threshold but the pair mean 0.45 is not
    peak = np.array([[0.9, 0.3, 0.8], [0.4, 0.3, 0.8], [0.55, 0.35, 0.8]])
    alone = decide_presence(peak, NAMES, [0.5, 0.5, 0.5])
    assert alone.tolist() == [[True, False, True], [False, False, True], [True, False, True]]
    paired = decide_presence(peak, NAMES, [0.5, 0.5, 0.5], pair_t=0.5)
    assert paired.tolist() == [[True, True, True], [False, False, True], [False, False, True]]
    np.testing.assert_allclose(pair_score(peak, NAMES), [0.6, 0.35, 0.45])


def test_pair_rule_follows_the_landmark_order_and_leaves_other_views_alone():
    peak = np.array([[0.8, 0.9, 0.2]])  # C-LV first, then I-RVI, A-RVI
    out = decide_presence(peak, ("C-LV", "I-RVI", "A-RVI"), [0.5, 0.5, 0.5], pair_t=0.6)
    assert out.tolist() == [[True, False, False]]  # mean of I-RVI 0.9 and A-RVI 0.2 = 0.55 < 0.6
    lax = decide_presence(np.array([[0.9, 0.1]]), ("AL-P", "IS-P"), [0.5, 0.5], pair_t=0.2)
    assert lax.tolist() == [[True, False]]  # no RV insertions in the view: the pair threshold does nothing
    assert decide_presence(np.zeros((0, 3)), NAMES, [0.5] * 3, 0.5).shape == (0, 3)


def test_youden_threshold_separates_and_keeps_the_detection_floor():
    rng = np.random.default_rng(0)
    present = np.r_[np.ones(200, bool), np.zeros(100, bool)]
    separable = np.r_[rng.uniform(0.6, 1.0, 200), rng.uniform(0.0, 0.4, 100)]
    t = youden_threshold(separable, present)
    assert 0.4 <= t <= 0.6
    assert ((separable >= t) == present).all()
    # overlapping scores: 10% of present slices score below every absent one; 95% detection must still hold
    overlap = np.r_[rng.uniform(0.0, 0.2, 20), rng.uniform(0.5, 1.0, 180), rng.uniform(0.2, 0.5, 100)]
    t = youden_threshold(overlap, present)
    assert (overlap[present] >= t).mean() >= 0.95
    assert t < 0.2  # to keep 95% of present slices it has to go below the 20 low ones' top, whatever the cost


def test_calibrate_pair_threshold_uses_only_samples_with_rv_labels():
    peak = np.array([[0.7, 0.7, 0.9], [0.2, 0.2, 0.9], [0.9, 0.9, 0.9]])
    present = np.array([[1, 1, 1], [0, 0, 1], [0, 0, 1]], bool)
    known = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 1]], bool)  # the third (an LGE set without RV label) cannot say
    t = calibrate_pair_threshold(peak, present, known, NAMES)
    assert 0.2 < t <= 0.7
    assert calibrate_pair_threshold(peak, present, np.zeros_like(known), NAMES) is None


def test_bundled_card_decides_the_pair():
    from CardiacLandmarksLib.models.loader import read_card

    card = read_card("sax_unet")
    t = card_pair_threshold(card)
    assert t is not None and 0.05 <= t <= 0.8
    assert card_min_lv_area(card) == MIN_LV_AREA_MM2
    assert card_max_clv_jump(card) == MAX_CLV_STACK_JUMP_MM
    assert card_max_clv_jump({"thresholds": {}}) is None
    assert card_pair_threshold({"thresholds": {"found": 0.3}}) is None


def test_c_lv_needs_a_segmented_lv_cavity_and_insertions_need_c_lv():
    # slice 0: sure heatmap peaks and a 300 mm^2 cavity; slice 1: C-LV peak 0.8 but the segmentation shows 6 mm^2
    # (above the base / below the apex); slice 2: the RV pair scores well but C-LV is absent
    peak = np.array([[0.9, 0.9, 0.9], [0.9, 0.9, 0.8], [0.9, 0.9, 0.1]])
    area = np.array([300.0, 6.0, 250.0])
    out = decide_presence(peak, NAMES, [0.5] * 3, 0.5, area, 20.0)
    assert out.tolist() == [[True, True, True], [False, False, False], [False, False, False]]
    # without an area (a card from before v1.5) the heatmap decides C-LV alone
    assert decide_presence(peak, NAMES, [0.5] * 3, 0.5).tolist() == [[True] * 3, [True] * 3, [False] * 3]


def test_lv_cavity_area_counts_lv_pixels_in_mm2():
    from CardiacLandmarksLib.sax.rvi_segmentation import SEG_LV, lv_cavity_area_mm2

    probs = np.zeros((2, 4, 20, 20), np.float32)
    probs[:, 0] = 1.0
    probs[0, SEG_LV, 5:9, 5:10] = 2.0  # 20 pixels of LV cavity on image 0, none on image 1
    np.testing.assert_allclose(lv_cavity_area_mm2(probs, 1.5), [20 * 2.25, 0.0])
