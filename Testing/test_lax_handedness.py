"""Left/right handedness of the long-axis canvas (issue 16, part 6).

A mirror image of a four-chamber view is an anatomy that does not exist. The canvas the LAX
model sees (``core.preprocessing.make_grid``) is built from the file geometry and must never
mirror: on every real subject and frame the RV lies on the same side of the mitral-midpoint ->
apex axis, and a file whose pixels *and* affine are flipped (the same physical image) gives
the same canvas. Real data: M&Ms-2 001 4CH (manual ED/ES masks: 1 LV, 2 myocardium, 3 RV) and
the two UK Biobank demo 4CH cines with their real affines (silver masks on all 50 frames:
1 LV cavity, 2 LV myocardium, 3 RV cavity, 4 LA, 5 RA).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_data

from CardiacLandmarksLib.lax.labels import CANVAS_4CH_HANDEDNESS, LAX_CANVAS_UP, four_chamber_handedness


def test_handedness_sign_flips_under_a_mirror_and_not_under_a_rotation():
    apex, mid, lv, rv = np.array([150.0, 50.0]), np.array([110.0, 100.0]), np.array([130.0, 80.0]), \
        np.array([100.0, 55.0])
    h = four_chamber_handedness(apex, mid, lv, rv)
    assert h == -1  # apex up-right, RV on the viewer's left: the canvas convention
    mirror = np.array([-1.0, 1.0])
    assert four_chamber_handedness(apex * mirror, mid * mirror, lv * mirror, rv * mirror) == -h
    for ang in np.radians([37.0, 120.0, 200.0, 300.0]):
        r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        assert four_chamber_handedness(r @ apex, r @ mid, r @ lv, r @ rv) == h


def _frame_handedness(image, mask, labels, t):
    """(handedness from the LV/RV centroids, handedness from IS-P - AL-P) on the inference canvas."""
    from CardiacLandmarksLib.core.preprocessing import make_grid, resample_labels_to_canvas
    from CardiacLandmarksLib.lax.labels import derive_from_series

    grid = make_grid(image, 0, up=LAX_CANVAS_UP)  # the grid detect_lax and the training build
    d = derive_from_series(image, mask, "4ch", labels=labels, t=t)
    canvas = resample_labels_to_canvas(mask.pixels[t, 0], grid)
    lv = np.argwhere(np.isin(canvas, [labels["lv"], labels["myo"]]))[:, ::-1].mean(0)
    rv = np.argwhere(canvas == labels["rv"])[:, ::-1].mean(0)
    apex, mid = grid.ijk_to_canvas(d.points["APEX"]), grid.ijk_to_canvas(d.mitral_midpoint())
    by_hinges = four_chamber_handedness(apex, mid, grid.ijk_to_canvas(d.points["AL-P"]),
                                        grid.ijk_to_canvas(d.points["IS-P"]))
    return four_chamber_handedness(apex, mid, lv, rv), by_hinges


@pytest.mark.parametrize("subject", ["mnms2-001", "ukbb-1", "ukbb-2"])
def test_canvas_never_mirrors_a_real_four_chamber_view(subject):
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.lax.labels import MNMS2_LAX_LABELS, UKBB_LAX4CH_LABELS

    if subject == "mnms2-001":
        d = require_data("mnms2", "001")
        pairs = [(load_series(d / f"001_LA_{ph}.nii.gz"), load_series(d / f"001_LA_{ph}_gt.nii.gz"), 0)
                 for ph in ("ED", "ES")]
        labels = MNMS2_LAX_LABELS
    else:
        d = require_data("lax", "ukbb_demo", subject.split("-")[1])
        image, mask = load_series(d / "la_4ch.nii.gz"), load_series(d / "seg4_la_4ch.nii.gz")
        assert image.orientation_known and np.allclose(image.direction, mask.direction)
        pairs = [(image, mask, t) for t in range(image.n_phases)]
        labels = UKBB_LAX4CH_LABELS
    signs = [_frame_handedness(img, msk, labels, t) for img, msk, t in pairs]
    assert len(signs) == (2 if subject == "mnms2-001" else 50)
    # the RV on the same side of the valve -> apex axis on every frame of every subject, and the
    # septal hinge IS-P (named from the RV) on that side too
    assert {s for pair in signs for s in pair} == {CANVAS_4CH_HANDEDNESS}


def _flipped(series, axis):
    """The same physical image with its pixel axis ``axis`` (0 = i, 1 = j) reversed and the affine to match."""
    from dataclasses import replace

    d = np.asarray(series.direction, float).copy()
    n = series.pixels.shape[3 - axis]
    shift = d[:, axis] * series.spacing[axis] * (n - 1)
    d[:, axis] *= -1
    pixels = np.flip(series.pixels, axis=3 - axis).copy()
    return replace(series, pixels=pixels, direction=d, slice_origins=np.asarray(series.slice_origins) + shift)


def _transposed(series):
    """The same physical image stored with i and j swapped (the plane's normal flips)."""
    from dataclasses import replace

    d = np.asarray(series.direction, float)[:, [1, 0, 2]].copy()
    d[:, 2] = np.cross(d[:, 0], d[:, 1])
    sp = (series.spacing[1], series.spacing[0], series.spacing[2])
    return replace(series, pixels=np.swapaxes(series.pixels, 2, 3).copy(), direction=d, spacing=sp)


def test_flipped_affine_and_pixels_give_the_same_canvas():
    from CardiacLandmarksLib.core.preprocessing import to_canvas
    from CardiacLandmarksLib.io.load import load_series

    s = load_series(require_data("lax", "ukbb_demo", "1", "la_4ch.nii.gz"))
    s = type(s)(**{**s.__dict__, "pixels": s.pixels[:3]})
    ref, grid = to_canvas(s, 0)
    assert ref.std() > 0.1
    for variant in (_flipped(s, 0), _flipped(s, 1), _flipped(_flipped(s, 0), 1), _transposed(s)):
        # the physical image is unchanged: each pixel keeps its value at its LPS position
        rng = np.random.default_rng(0)
        for i, j in zip(rng.integers(0, s.pixels.shape[3], 20), rng.integers(0, s.pixels.shape[2], 20)):
            i2, j2, _ = np.rint(variant.lps_to_ijk(s.ijk_to_lps(np.array([i, j, 0.0])))).astype(int)
            assert variant.pixels[0, 0, j2, i2] == s.pixels[0, 0, j, i]
        canvas, _ = to_canvas(variant, 0)
        assert np.abs(canvas - ref).max() < 1e-4
    # ...while flipping the pixels alone (a wrong header) mirrors the canvas
    wrong = type(s)(**{**s.__dict__, "pixels": np.flip(s.pixels, axis=3).copy()})
    assert np.abs(to_canvas(wrong, 0)[0] - ref).max() > 0.5


def test_flipped_file_on_disk_gives_the_same_canvas(tmp_path):
    """Through the file loader: SimpleITK's Flip keeps the physical image (it rewrites origin and direction)."""
    import SimpleITK as sitk

    from CardiacLandmarksLib.core.preprocessing import to_canvas
    from CardiacLandmarksLib.io.load import load_series

    src = require_data("mnms2", "001", "001_LA_ED.nii.gz")
    img = sitk.ReadImage(str(src))
    for flips in ([True, False, False], [False, True, False], [True, True, False]):
        out = tmp_path / f"flip_{''.join('1' if f else '0' for f in flips)}.nii.gz"
        sitk.WriteImage(sitk.Flip(img, flips), str(out))
        a, b = load_series(src), load_series(out)
        assert b.orientation_known
        assert not np.allclose(a.pixels, b.pixels)
        assert np.abs(to_canvas(a, 0)[0] - to_canvas(b, 0)[0]).max() < 1e-3
