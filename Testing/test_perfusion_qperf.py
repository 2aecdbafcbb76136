"""Quantitative MBF on the QPerf example (Xue et al., MRM 2020; Gd concentration, AIF, dt = 0.5 s).

The pixel size of the QPerf crops is not recorded; 2.0 mm is assumed (the LV cavity, ~20 px
wide, then measures ~40 mm), which only matters for the segmentation network.
Measured when written: rest 1.08 +- 0.47 ml/min/g (global-curve fit 0.90), stress 3.24 +- 0.76
(curve 3.11), MPR 2.99.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from CardiacLandmarksLib.io.curves import read_curve
from CardiacLandmarksLib.io.load import load_series
from CardiacLandmarksLib.perfusion import pipeline as pp
from CardiacLandmarksLib.perfusion import segmentation as ps


@pytest.fixture(scope="module")
def qperf(data_root):
    logging.getLogger("CardiacLandmarksLib").setLevel(logging.WARNING)
    root = data_root / "perfusion" / "qperf"
    model = ps.load_model()
    out = {}
    for cond, data, aif in (("rest", "data", "aif"), ("stress", "data_stress", "aif_stress")):
        s = load_series(root / f"{data}.hdr", time_axis="last")
        s.spacing = (2.0, 2.0, s.spacing[2])
        inp = pp.SeriesInput(s, data, cond, "mid", aif=read_curve(root / f"{aif}.hdr"), concentration=True, dt_s=0.5)
        out[cond] = pp.analyse_series(inp, model, use_sax_model=False)
    return out, pp.summarise(list(out.values()))


def test_global_mbf_in_physiological_range(qperf):
    analyses, summary = qperf
    rest = summary["global"]["rest"]["mbf"]
    stress = summary["global"]["stress"]["mbf"]
    assert summary["units"]["mbf"] == "ml/min/g"
    assert 0.5 <= rest["mean"] <= 1.5
    assert 1.5 <= stress["mean"] <= 4.0
    assert rest["n_pixels"] > 150 and stress["n_pixels"] > 150
    # the fit of the mean myocardial curve agrees with the pixel maps
    assert 0.5 <= analyses["rest"].fermi_info["global_curve_mbf"] <= 1.5
    assert 1.5 <= analyses["stress"].fermi_info["global_curve_mbf"] <= 4.0
    assert 1.5 < summary["global"]["reserve"]["mpr"] < 5.0


def test_segment_mbf_present_for_mid_segments(qperf):
    _, summary = qperf
    for seg in range(7, 13):
        for cond in ("rest", "stress"):
            st = summary["segments"][seg][cond]["mbf"]
            assert st["n_pixels"] > 10 and np.isfinite(st["mean"]) and st["sd"] >= 0
    assert "rest" not in summary["segments"][1]  # no basal slice given
