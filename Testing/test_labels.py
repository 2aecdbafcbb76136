"""Derived SAX landmarks on constructed masks where the right answer is known, and on real ACDC masks."""

import numpy as np
import SimpleITK as sitk

from CardiacLandmarksLib.sax.labels import derive_sax_landmarks


def ring_mask(shape=(120, 120), center=(60.0, 60.0), r_in=15, r_out=22, rv_from_deg=120, rv_to_deg=240):
    """LV cavity disc, myocardium ring and an RV crescent touching the ring over an angular arc.

    Angles are measured in image (i, j) coordinates from +i (column axis), so 180 deg = viewer's left,
    90 deg = down (j increases downwards).
    """
    jj, ii = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    di, dj = ii - center[0], jj - center[1]
    r = np.hypot(di, dj)
    ang = np.degrees(np.arctan2(dj, di)) % 360
    m = np.zeros(shape, np.int16)
    m[r < r_in] = 3
    m[(r >= r_in) & (r < r_out)] = 2
    m[(r >= r_out) & (r < r_out + 10) & (ang >= rv_from_deg) & (ang <= rv_to_deg)] = 1
    return m


def test_center_is_cavity_centroid():
    m = ring_mask(center=(50.0, 70.0))
    lm = derive_sax_landmarks(m)
    np.testing.assert_allclose(lm["C-LV"], [50.0, 70.0], atol=0.05)


def test_rvi_at_arc_ends_and_named_by_display_convention():
    # RV on the viewer's left from 150 deg (down-left) to 230 deg (up-left); j grows downwards,
    # so the 230 deg end is the upper one = anterior in the display convention.
    m = ring_mask(rv_from_deg=150, rv_to_deg=230)
    lm = derive_sax_landmarks(m)
    c = lm["C-LV"]
    ang = {k: np.degrees(np.arctan2(*(lm[k] - c)[::-1])) % 360 for k in ("A-RVI", "I-RVI")}
    assert abs(ang["A-RVI"] - 230) < 6
    assert abs(ang["I-RVI"] - 150) < 6
    assert lm["A-RVI"][1] < lm["I-RVI"][1]  # anterior end is higher on screen
    # the points lie on the epicardial border (radius ~ r_out)
    for k in ("A-RVI", "I-RVI"):
        assert 19 < np.linalg.norm(lm[k] - c) < 24


def test_rotation_keeps_names_mirror_swaps_them():
    m = ring_mask(rv_from_deg=150, rv_to_deg=230)
    rot = np.rot90(m, 1).copy()  # 90 deg rotation: chirality kept
    lm, lr = derive_sax_landmarks(m), derive_sax_landmarks(rot)
    # np.rot90 maps (j, i) -> (W-1-i, j): point (i, j) goes to (j, W-1-i)
    w = m.shape[1]
    expect_a = np.array([lm["A-RVI"][1], w - 1 - lm["A-RVI"][0]])
    np.testing.assert_allclose(lr["A-RVI"], expect_a, atol=1.0)
    mir = m[:, ::-1].copy()  # mirror: RV on the right; names swap (chirality rule)
    lf = derive_sax_landmarks(mir)
    np.testing.assert_allclose(lf["I-RVI"], [w - 1 - lm["A-RVI"][0], lm["A-RVI"][1]], atol=1.0)


def test_superior_direction_overrides_display():
    m = ring_mask(rv_from_deg=150, rv_to_deg=230)
    assert derive_sax_landmarks(m)["A-RVI"][1] < derive_sax_landmarks(m)["I-RVI"][1]  # display: A-RVI up
    lm = derive_sax_landmarks(m, superior_dir=np.array([0.0, 1.0]))  # head = down on screen
    assert lm["A-RVI"][1] > lm["I-RVI"][1]


def test_absent_cases():
    m = ring_mask()
    no_lv = m.copy()
    no_lv[no_lv == 3] = 2
    assert all(v is None for v in derive_sax_landmarks(no_lv).values())
    no_rv = m.copy()
    no_rv[no_rv == 1] = 0
    lm = derive_sax_landmarks(no_rv)
    assert lm["C-LV"] is not None and lm["A-RVI"] is None and lm["I-RVI"] is None


def test_real_acdc_mid_slice(acdc_dir):
    gt = sitk.GetArrayFromImage(sitk.ReadImage(str(acdc_dir / "patient001_ED_gt.nii.gz")))
    k = gt.shape[0] // 2
    lm = derive_sax_landmarks(gt[k])
    assert all(v is not None for v in lm.values())
    c = lm["C-LV"]
    # RV lies on the viewer's left of the LV in ACDC's stored display; both insertions left of C-LV
    rv_i = np.argwhere(gt[k] == 1)[:, 1].mean()
    assert rv_i < c[0]
    assert lm["A-RVI"][1] < lm["I-RVI"][1]
    # insertion points touch both RV and myocardium
    for name in ("A-RVI", "I-RVI"):
        i, j = np.round(lm[name]).astype(int)
        patch = gt[k, j - 3 : j + 4, i - 3 : i + 4]
        assert (patch == 1).any() and (patch == 2).any()


def test_masks_in_another_label_convention_are_named_before_training(data_root, tmp_path, capsys):
    """A site training or evaluating on its own masks in the M&Ms / UK Biobank convention (LV 1, myocardium 2,
    RV 3) got them read with ACDC's values (RV 1, LV 3): the 'LV centre' was the RV's centroid and the 'RV
    insertions' the ends of the LV's contact with the myocardium, and nothing said so. The LV cavity is the label
    the myocardium surrounds: masks that do not follow the values given are refused by name, with the values that
    fit, and `--labels` gives them."""
    import numpy as np
    import pytest

    from CardiacLandmarksLib.cli import main
    from CardiacLandmarksLib.core.errors import LabelConventionError
    from CardiacLandmarksLib.datasets.sax import check_case_labels, paired_cases
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.sax.labels import ACDC_LABELS, MNMS2_LABELS, label_problem, parse_labels
    from CardiacLandmarksLib.training.train_sax import TrainConfig, split_sets

    mnms = np.rint(load_series(data_root / "mnms2" / "001" / "001_SA_ED_gt.nii.gz").pixels[0]).astype(int)
    acdc = np.rint(load_series(data_root / "acdc" / "patient001_ED_gt.nii.gz").pixels[0]).astype(int)
    assert label_problem(mnms, MNMS2_LABELS) == "" and label_problem(acdc, ACDC_LABELS) == ""
    assert label_problem(mnms, ACDC_LABELS) == (
        "the LV cavity label 3 is not surrounded by the myocardium label 2 (29% of the pixels around it; an LV cavity "
        "has at least 70%, the RV label 1 100%): the masks look like rv=3,myo=2,lv=1")
    assert label_problem(acdc, MNMS2_LABELS).endswith("the masks look like rv=1,myo=2,lv=3")
    assert parse_labels("LV=1, myo=2, rv=3") == MNMS2_LABELS and parse_labels("") == ACDC_LABELS
    for bad in ("lv=1,rv=3", "lv=1,myo=1,rv=3", "lv=1,myo=2,rv=x", "la=1,myo=2,rv=3"):
        with pytest.raises(ValueError, match="labels"):
            parse_labels(bad)
    data = tmp_path / "site"
    data.mkdir()
    for ph in ("ED", "ES"):
        for tail in ("", "_gt"):
            (data / f"m001_{ph}{tail}.nii.gz").symlink_to(data_root / "mnms2" / "001" / f"001_SA_{ph}{tail}.nii.gz")
    with pytest.raises(LabelConventionError, match=r"^2 of 2 masks do not follow the label values rv=1,myo=2,lv=3: "
                                                   r"m001_ED_gt.nii.gz: .* Give the masks' values with --labels"):
        check_case_labels(paired_cases(data))
    check_case_labels(paired_cases(data, MNMS2_LABELS))
    assert main(["evaluate", "--data", str(data), "--split", "all", "--no-confidence-table"]) == 1
    assert "the masks look like rv=3,myo=2,lv=1" in capsys.readouterr().err
    with pytest.raises(LabelConventionError):
        split_sets(data, TrainConfig(sets="acdc"))  # train refuses before any sample is built
    run = tmp_path / "refused"  # ... and leaves no empty output folder (it made it first)
    assert main(["train", "--data", str(data), "--sets", "acdc", "--epochs", "1", "-o", str(run)]) == 1
    assert "do not follow the label values" in capsys.readouterr().err and not run.exists()
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(data), "--labels", "lv=1,rv=3", "-o", str(tmp_path / "run")])
    assert exc.value.code == 2 and "argument --labels: labels 'lv=1,rv=3'" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(data), "--split", "all", "--labels", "lv=1,myo=2,rv=3",
                 "--no-confidence-table", "--device", "cpu"]) == 0
    assert "m001_ED" in capsys.readouterr().out
