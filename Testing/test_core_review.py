"""Review queue and correction rule (core.review), without MRML: the rules the Slicer panel and web app share."""

from __future__ import annotations

import numpy as np

from CardiacLandmarksLib.core.landmarks import Landmark
from CardiacLandmarksLib.core.review import (
    POSITION_TOLERANCE_MM,
    corrected_landmark,
    flag_counts,
    flagged_points,
    merge_queues,
    next_flagged,
)

NAMES = ("A-RVI", "I-RVI", "C-LV")


def _lm(name, k, t, flag, conf, found=True, corrected=False):
    pos = np.array([10.0 * k, 5.0, 2.0 * t]) if found else np.full(3, np.nan)
    return Landmark(name, k, t, found, pos, pos.copy(), conf, flag if found else "absent", corrected)


def _set():
    return [_lm("C-LV", 0, 0, "high", 0.9), _lm("I-RVI", 0, 0, "low", 0.2), _lm("A-RVI", 1, 0, "low", 0.05),
            _lm("A-RVI", 0, 1, "absent", 0.0, found=False), _lm("I-RVI", 1, 1, "low", 0.3, corrected=True)]


def test_queue_holds_only_uncorrected_low_and_absent_points_in_review_order():
    q = flagged_points(_set(), NAMES)
    assert [(p.name, p.slice, p.phase) for p in q] == [("I-RVI", 0, 0), ("A-RVI", 1, 0), ("A-RVI", 0, 1)]
    by_conf = flagged_points(_set(), NAMES, by_confidence=True)
    assert [p.confidence for p in by_conf] == [0.0, 0.05, 0.2]


def test_next_flagged_wraps_and_is_none_when_nothing_is_left():
    q = flagged_points(_set(), NAMES)
    assert next_flagged(q).name == "I-RVI"
    assert next_flagged(q, after=q[0].key) is q[1]
    assert next_flagged(q, after=q[-1].key) is q[0]
    assert next_flagged([]) is None


def test_cohort_queue_puts_the_most_doubtful_point_of_any_case_first():
    a = flagged_points(_set(), NAMES, case="patient001")
    b = flagged_points([_lm("C-LV", 3, 0, "low", 0.01)], NAMES, case="patient002")
    merged = merge_queues([a, b])
    assert merged[0].case == "patient001" and merged[0].flag == "absent"
    assert merged[1].case == "patient002"


def test_flag_counts():
    assert flag_counts(_set()) == {"total": 5, "high": 1, "low": 2, "absent": 1, "corrected": 1, "confirmed": 0}
    confirmed = _set()[:2] + [corrected_landmark(_lm("A-RVI", 1, 0, "low", 0.05), "A-RVI", 1, 0, True,
                                                 [10.0, 5.0, 0.0], [10.0, 5.0, 0.0], confirmed=True)]
    assert flag_counts(confirmed) == {"total": 3, "high": 1, "low": 1, "absent": 0, "corrected": 0, "confirmed": 1}


def test_confirmation_rule():
    """A low point the reader confirms where the model put it is trusted like a moved one and says so; a confirmed
    point that is then moved is a plain correction; an absent point or a moved one cannot be 'confirmed'."""
    det = _lm("A-RVI", 1, 0, "low", 0.05)
    det.doubt = "the detector's estimates disagree by 5.3 mm"
    ok = corrected_landmark(det, "A-RVI", 1, 0, True, det.position, det.ijk, confirmed=True)
    assert (ok.corrected, ok.confirmed, ok.flag, ok.confidence, ok.doubt) == (True, True, "high", 1.0, "")
    assert not flagged_points([ok], NAMES)
    # the same position submitted again (a viewer's echo) keeps it confirmed; a drag makes it a correction
    again = corrected_landmark(ok, "A-RVI", 1, 0, True, ok.position, ok.ijk)
    assert again.confirmed and again.corrected
    moved = corrected_landmark(ok, "A-RVI", 1, 0, True, ok.position + [3.0, 0, 0], ok.ijk)
    assert moved.corrected and not moved.confirmed
    # a point the reader had moved is not 'confirmed' by a confirmation: it stays a correction
    assert not corrected_landmark(moved, "A-RVI", 1, 0, True, moved.position, moved.ijk, confirmed=True).confirmed
    # confirmed but moved in the same step (a Slicer point whose description says confirmed, then dragged)
    dragged = corrected_landmark(det, "A-RVI", 1, 0, True, det.position + [0, 4.0, 0], det.ijk, confirmed=True)
    assert dragged.corrected and not dragged.confirmed
    # nothing to confirm on an unset point
    unset = corrected_landmark(_lm("A-RVI", 0, 1, "absent", 0.0, found=False), "A-RVI", 0, 1, False, None, None,
                               confirmed=True)
    assert (unset.found, unset.corrected, unset.confirmed, unset.flag) == (False, False, False, "absent")
    # a file point with no model record (detected None) that says confirmed
    read = corrected_landmark(None, "C-LV", 2, 0, True, [1.0, 2.0, 3.0], [1.0, 2.0, 2.0], user_marked=True,
                              confirmed=True)
    assert read.corrected and read.confirmed


def test_correction_rule():
    det = _lm("A-RVI", 1, 0, "low", 0.05)
    det.doubt = "PHD-Net does not confirm the point"
    # unchanged (within tolerance): keeps the model's flag, confidence and reason
    same = corrected_landmark(det, "A-RVI", 1, 0, True, det.position + POSITION_TOLERANCE_MM / 10, det.ijk)
    assert not same.corrected and same.flag == "low" and same.confidence == 0.05 and same.doubt == det.doubt
    assert flagged_points([same], NAMES)[0].doubt == det.doubt  # the review queue says why
    # moved: corrected, confidence 1, high, no doubt left
    moved = corrected_landmark(det, "A-RVI", 1, 0, True, det.position + [2.0, 0, 0], det.ijk)
    assert moved.corrected and moved.flag == "high" and moved.confidence == 1.0 and moved.doubt == ""
    np.testing.assert_allclose(moved.position, det.position + [2.0, 0, 0])
    # unset: corrected absent
    unset = corrected_landmark(det, "A-RVI", 1, 0, False, None, None)
    assert unset.corrected and unset.flag == "absent" and not unset.found and np.isnan(unset.position).all()
    # placed where the model found nothing
    missing = _lm("A-RVI", 0, 1, "absent", 0.0, found=False)
    placed = corrected_landmark(missing, "A-RVI", 0, 1, True, [1.0, 2.0, 3.0], [0.5, 0.5, 0.0])
    assert placed.corrected and placed.found and placed.flag == "high"
    # a point not from this tool: trust the viewer's state
    foreign = corrected_landmark(None, "C-LV", 0, 0, True, [0, 0, 0], [0, 0, 0], shown_confidence=0.4, selected=False)
    assert not foreign.corrected and foreign.flag == "low" and foreign.confidence == 0.4
