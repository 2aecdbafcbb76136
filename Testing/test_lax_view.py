"""View recognition: constructed orientations, descriptions, override, real files."""

from __future__ import annotations

import numpy as np
import pytest

from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.io.view import NOMINAL_LONG_AXIS_LPS, detect_view, recognise_view


def plane(normal, description="", n_slices=1, known=True):
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    a = np.cross(n, [0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.cross(n, [1.0, 0.0, 0.0])
    u = a / np.linalg.norm(a)
    v = np.cross(n, u)
    d = np.column_stack([u, v, n])
    origins = np.arange(n_slices)[:, None] * 8.0 * n[None, :]
    return CMRSeries(np.zeros((1, n_slices, 8, 8), np.float32), (1.5, 1.5, 8.0), d, origins,
                     orientation_known=known, description=description)


def test_orientation_sax_vs_lax():
    sax = recognise_view(plane(NOMINAL_LONG_AXIS_LPS))
    assert sax.view == "sax" and sax.source == "orientation" and sax.normal_angle_deg < 1
    tilted = recognise_view(plane(NOMINAL_LONG_AXIS_LPS + np.array([0.3, 0.2, 0.0])))
    assert tilted.view == "sax"
    perp = np.cross(NOMINAL_LONG_AXIS_LPS, [0, 0, 1.0])
    lax = recognise_view(plane(perp))
    assert lax.view == "lax" and lax.is_lax and lax.normal_angle_deg > 85
    # in between (50 deg): undecided by orientation
    mid = np.cos(np.radians(50)) * NOMINAL_LONG_AXIS_LPS + np.sin(np.radians(50)) * perp / np.linalg.norm(perp)
    assert recognise_view(plane(mid)).view == "unknown"


def test_description_beats_orientation_and_override_beats_all():
    s = plane(NOMINAL_LONG_AXIS_LPS, description="CINE 4CH retro")
    assert recognise_view(s).view == "4ch"
    assert recognise_view(plane([0, 0, 1.0], "cine_2ch")).view == "2ch"
    assert recognise_view(plane([0, 0, 1.0], "LVOT cine")).view == "3ch"
    g = recognise_view(plane(NOMINAL_LONG_AXIS_LPS, "001_LA_CINE"))
    assert g.view == "lax" and "check the header" in g.reason
    assert recognise_view(s, override="sax").view == "sax"
    with pytest.raises(ValueError):
        recognise_view(s, override="5ch")


def test_no_orientation_stack_or_unknown():
    assert recognise_view(plane([0, 0, 1.0], known=False, n_slices=10)).view == "sax"
    assert recognise_view(plane([0, 0, 1.0], known=False)).view == "unknown"
    assert detect_view(plane([0, 0, 1.0], known=False)) == "sax"
    assert detect_view(plane(np.cross(NOMINAL_LONG_AXIS_LPS, [0, 0, 1.0]))) == "4ch"


def test_real_files(data_root):
    from CardiacLandmarksLib.io.load import load_series

    assert recognise_view(load_series(data_root / "mnms2/001/001_LA_CINE.nii.gz")).view == "lax"
    assert recognise_view(load_series(data_root / "mnms2/001/001_SA_ED.nii.gz")).view == "sax"
    assert recognise_view(load_series(data_root / "lax/mnms2_cinema/lax_4c_ed.nii.gz")).view == "4ch"
    # MS-CMR LGE stacks carry correct scanner orientation: short axis from the plane normal alone
    for sid in (1, 8):
        s = load_series(data_root / f"lge/mscmr/subject{sid}_DE.nii.gz")
        s.description = "x"
        s.source = "x"
        g = recognise_view(s)
        assert g.view == "sax" and g.source == "orientation"
