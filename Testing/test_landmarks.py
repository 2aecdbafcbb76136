"""LandmarkSet.get keeps answering like a scan of the list while callers mutate the list."""

from __future__ import annotations

import numpy as np

from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet


def _lm(name: str, k: int, t: int, x: float = 0.0) -> Landmark:
    return Landmark(name, k, t, True, np.array([x, 0.0, 0.0]), np.array([x, 0.0, float(k)]), 0.9, "high")


def _scan(lmset: LandmarkSet, name: str, k: int, t: int):
    return next((lm for lm in lmset.landmarks if (lm.name, lm.slice, lm.phase) == (name, k, t)), None)


def test_get_follows_appends_sorts_renames_and_replacements():
    s = LandmarkSet("x", "sax", {}, [_lm(n, k, t) for t in range(3) for k in range(4) for n in ("A-RVI", "I-RVI", "C-LV")])
    assert s.get("C-LV", 2, 1) is _scan(s, "C-LV", 2, 1)
    assert s.get("C-LV", 9, 0) is None
    s.landmarks.append(_lm("C-LV", 9, 0, 5.0))                        # appended after the index was built
    assert s.get("C-LV", 9, 0) is s.landmarks[-1]
    s.landmarks.sort(key=lambda lm: (lm.slice, lm.phase, lm.name))    # every position changes
    for key in [("A-RVI", 3, 2), ("I-RVI", 0, 0), ("C-LV", 9, 0)]:
        assert s.get(*key) is _scan(s, *key)
    a, i = s.get("A-RVI", 1, 1), s.get("I-RVI", 1, 1)
    a.name, i.name = "I-RVI", "A-RVI"                                 # A/I renaming, as the geometry check does
    assert s.get("A-RVI", 1, 1) is i and s.get("I-RVI", 1, 1) is a
    pos = s.landmarks.index(s.get("C-LV", 0, 2))
    s.landmarks[pos] = _lm("C-LV", 0, 2, 7.0)                          # replaced in place
    assert s.get("C-LV", 0, 2) is s.landmarks[pos]
    del s.landmarks[: len(s.landmarks) // 2]                          # shrunk
    for lm in list(s.landmarks):
        assert s.get(lm.name, lm.slice, lm.phase) is _scan(s, lm.name, lm.slice, lm.phase)
    assert s.get("A-RVI", 0, 0) is _scan(s, "A-RVI", 0, 0)
