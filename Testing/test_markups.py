"""Slicer markups (.mrk.json): schema, round trip, no silent overwrite, and the real Slicer reader/writer.

The Slicer checks use the ``slicer-core`` wheel (a test dependency): its
``vtkSlicerMarkupsLogic.LoadMarkups`` is the code Slicer runs when a user drops the file in.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import InputNotFoundError, InvalidMarkupsError, OutputExistsError
from CardiacLandmarksLib.core.geometry import lps_to_ras
from CardiacLandmarksLib.core.landmarks import Landmark, LandmarkSet
from CardiacLandmarksLib.io.markups import read_markups, write_markups

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "Resources" / "Schema" / "markups-schema-v1.0.3.json").read_text())

MODEL = {"name": "sax-unet", "version": "0.1", "sha256": "ab" * 32}


def _validate(path: Path) -> dict:
    doc = json.loads(path.read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(doc)]
    assert errors == []
    return doc


def _lm(name, k, t, pos, conf, flag=None):
    if pos is None:
        nan = np.full(3, np.nan)
        return Landmark(name, k, t, False, nan, nan.copy(), 0.0, "absent")
    return Landmark(name, k, t, True, np.asarray(pos, float), np.array([10.0 + k, 20.0, k]), conf,
                    flag or ("high" if conf >= 0.5 else "low"))


@pytest.fixture()
def lmset() -> LandmarkSet:
    """2 phases x 2 slices; one low-confidence and one absent point."""
    lms = []
    for t in (0, 1):
        for k in (0, 1):
            base = np.array([-30.5 + k, 12.25 - t, 101.0 + 8 * k])
            lms.append(_lm("C-LV", k, t, base, 0.97))
            lms.append(_lm("A-RVI", k, t, base + [-18.0, -14.5, 0.3], 0.93 if (k, t) != (1, 0) else 0.42))
            lms.append(_lm("I-RVI", k, t, None if (k, t) == (1, 1) else base + [-15.0, 17.0, -0.2], 0.81234))
    low = next(lm for lm in lms if lm.flag == "low")
    low.doubt = "the network's own estimates disagree (5.3 mm; limit 3 mm)"
    return LandmarkSet("case01.nii.gz", "sax", dict(MODEL), lms)


def _key(lm):
    return (lm.name, lm.slice, lm.phase)


def test_write_layout_and_schema(lmset, tmp_path):
    paths = write_markups(lmset, tmp_path)
    assert [p.name for p in paths] == ["landmarks_phase00.mrk.json", "landmarks_phase01.mrk.json"]
    doc = _validate(paths[1])
    assert "markups-schema-v1.0.3.json" in doc["@schema"]
    mk = doc["markups"][0]
    assert mk["type"] == "Fiducial" and mk["coordinateSystem"] == "LPS" and mk["name"] == "landmarks phase 1"
    labels = [cp["label"] for cp in mk["controlPoints"]]
    assert labels == ["A-RVI s0 p1", "I-RVI s0 p1", "C-LV s0 p1", "A-RVI s1 p1", "I-RVI s1 p1", "C-LV s1 p1"]
    by_label = {cp["label"]: cp for cp in mk["controlPoints"]}
    absent = by_label["I-RVI s1 p1"]
    assert absent["positionStatus"] == "undefined" and "position" not in absent and absent["selected"] is False
    assert absent["description"] == "absent"
    a = by_label["A-RVI s0 p1"]
    assert a["positionStatus"] == "defined" and a["selected"] is True and a["locked"] is False
    assert a["position"] == pytest.approx(list(lmset.get("A-RVI", 0, 1).position))
    assert a["description"].startswith("high confidence 0.93")
    conf = next(m for m in mk["measurements"] if m["name"] == "confidence")
    assert conf["controlPointValues"] == pytest.approx([0.93, 0.81234, 0.97, 0.93, 0.0, 0.97])
    # the low-confidence point is drawn unselected
    low = json.loads(paths[0].read_text())["markups"][0]["controlPoints"]
    low = {cp["label"]: cp for cp in low}["A-RVI s1 p0"]
    assert low["selected"] is False and low["description"].startswith("low confidence 0.42")
    # a single-phase set gives one file named after the stem; a .mrk.json path gives one file
    one = LandmarkSet("x", "sax", {}, [lm for lm in lmset.landmarks if lm.phase == 0])
    assert [p.name for p in write_markups(one, tmp_path / "single", stem="case01")] == ["case01.mrk.json"]
    p = write_markups(lmset, tmp_path / "all.mrk.json")[0]
    assert len(_validate(p)["markups"][0]["controlPoints"]) == 12


def test_round_trip(lmset, tmp_path):
    write_markups(lmset, tmp_path)
    back = read_markups(tmp_path)
    assert back.view == "sax" and back.model == MODEL and back.source == "case01.nii.gz"
    assert {_key(lm) for lm in back.landmarks} == {_key(lm) for lm in lmset.landmarks}
    for lm in back.landmarks:
        orig = lmset.get(*_key(lm))
        assert lm.found == orig.found and lm.flag == orig.flag and lm.corrected is False
        assert lm.doubt == orig.doubt  # the reason a point is low travels in its description
        assert lm.confidence == orig.confidence  # exact: from controlPointValues
        if lm.found:
            np.testing.assert_allclose(lm.position, orig.position, atol=1e-12)
        assert np.all(np.isnan(lm.ijk))  # no series given


def test_never_overwrites_silently(lmset, tmp_path):
    target = tmp_path / "pts.mrk.json"
    target.write_text("user corrected points\n")
    write_markups(lmset, target)
    backups = sorted(tmp_path.glob("pts.mrk.json.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == "user corrected points\n"
    _validate(target)
    # a second write in the same second gets a numbered backup, nothing is lost
    first = target.read_text()
    write_markups(lmset, target)
    backups = sorted(tmp_path.glob("pts.mrk.json.bak-*"))
    assert len(backups) == 2 and first in [b.read_text() for b in backups]
    # "error" refuses and leaves the file as it was
    before = target.read_bytes()
    with pytest.raises(OutputExistsError):
        write_markups(lmset, target, if_exists="error")
    assert target.read_bytes() == before
    # reading the folder ignores the backups
    assert len(read_markups(tmp_path).landmarks) == 12
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_ras_file_and_foreign_points(tmp_path, caplog):
    doc = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                      "Resources/Schema/markups-schema-v1.0.4.json#",
           "markups": [{"type": "Fiducial", "coordinateSystem": "RAS", "controlPoints": [
               {"label": "C-LV s2 p0", "position": [1.0, 2.0, 3.0], "positionStatus": "defined"},
               {"label": "F-1", "position": [0.0, 0.0, 0.0], "positionStatus": "defined"}]}]}
    p = tmp_path / "ras.mrk.json"
    p.write_text(json.dumps(doc))
    back = read_markups(p)
    assert len(back.landmarks) == 1 and "F-1" in caplog.text
    lm = back.landmarks[0]
    np.testing.assert_allclose(lm.position, [-1.0, -2.0, 3.0])
    # a point without our description was placed by a user
    assert lm.found and lm.corrected and lm.confidence == 1.0 and lm.flag == "high"


def test_read_errors(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_markups(tmp_path / "missing.mrk.json")
    with pytest.raises(InputNotFoundError):
        read_markups(tmp_path)  # folder without markups
    empty = tmp_path / "empty.mrk.json"
    empty.write_bytes(b"")
    with pytest.raises(InvalidMarkupsError):
        read_markups(empty)
    bad = tmp_path / "bad.mrk.json"
    bad.write_text('{"markups": [')
    with pytest.raises(InvalidMarkupsError):
        read_markups(bad)
    other = tmp_path / "other.mrk.json"
    other.write_text('{"a": 1}')
    with pytest.raises(InvalidMarkupsError):
        read_markups(other)


# ---------------------------------------------------------------- real Slicer reader (slicer-core)


@pytest.fixture(scope="module")
def slicer_env():
    import slicer

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)  # adds the selection node the markups logic needs
    logic = slicer.vtkSlicerMarkupsLogic()
    logic.SetMRMLScene(scene)
    return slicer, scene, logic, app


def _node_points(node):
    out = []
    for i in range(node.GetNumberOfControlPoints()):
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(i, p)
        out.append((node.GetNthControlPointLabel(i), np.array(p), node.GetNthControlPointPositionStatus(i),
                    bool(node.GetNthControlPointSelected(i)), bool(node.GetNthControlPointLocked(i))))
    return out


def test_slicer_loads_our_file(lmset, tmp_path, slicer_env):
    slicer, scene, logic, _ = slicer_env
    path = write_markups(lmset, tmp_path)[0]  # phase 0
    node_id = logic.LoadMarkups(str(path))
    assert node_id, "Slicer could not load the file"
    node = scene.GetNodeByID(node_id)
    assert node.GetClassName() == "vtkMRMLMarkupsFiducialNode"
    assert node.GetName() == "landmarks phase 0"
    pts = _node_points(node)
    assert len(pts) == 6
    expected = {f"{lm.name} s{lm.slice} p{lm.phase}": lm for lm in lmset.landmarks if lm.phase == 0}
    assert [p[0] for p in pts] == ["A-RVI s0 p0", "I-RVI s0 p0", "C-LV s0 p0", "A-RVI s1 p0", "I-RVI s1 p0",
                                   "C-LV s1 p0"]
    for label, pos, status, selected, locked in pts:
        lm = expected[label]
        assert status == slicer.vtkMRMLMarkupsNode.PositionDefined
        # file is LPS, the node holds RAS
        np.testing.assert_allclose(pos, lps_to_ras(lm.position), atol=1e-9)
        assert selected == (lm.flag == "high") and not locked
    assert node.GetNthControlPointDescription(3).startswith("low confidence 0.42")
    meas = node.GetMeasurement("confidence")
    values = meas.GetControlPointValues()
    assert [values.GetValue(i) for i in range(values.GetNumberOfTuples())] == pytest.approx(
        [0.93, 0.81234, 0.97, 0.42, 0.81234, 0.97])
    # phase 1 holds an absent point: loaded as an unplaced control point
    node1 = scene.GetNodeByID(logic.LoadMarkups(str(tmp_path / "landmarks_phase01.mrk.json")))
    status = {node1.GetNthControlPointLabel(i): node1.GetNthControlPointPositionStatus(i)
              for i in range(node1.GetNumberOfControlPoints())}
    assert status["I-RVI s1 p1"] == slicer.vtkMRMLMarkupsNode.PositionUndefined
    assert status["A-RVI s1 p1"] == slicer.vtkMRMLMarkupsNode.PositionDefined


def test_user_edits_saved_by_slicer_are_read_back(lmset, tmp_path, slicer_env):
    """Move, unset and place points in Slicer, save with Slicer's own writer, read with read_markups."""
    slicer, scene, logic, _ = slicer_env
    path = write_markups(lmset, tmp_path / "in")[1]  # phase 1
    node = scene.GetNodeByID(logic.LoadMarkups(str(path)))
    idx = {node.GetNthControlPointLabel(i): i for i in range(node.GetNumberOfControlPoints())}
    moved_lps = lmset.get("A-RVI", 0, 1).position + np.array([2.0, -1.5, 0.0])
    ras = lps_to_ras(moved_lps)
    node.SetNthControlPointPosition(idx["A-RVI s0 p1"], float(ras[0]), float(ras[1]), float(ras[2]))
    node.UnsetNthControlPointPosition(idx["C-LV s1 p1"])  # user says: not on this slice
    placed_lps = np.array([-40.0, 20.0, 108.5])
    ras = lps_to_ras(placed_lps)
    node.SetNthControlPointPosition(idx["I-RVI s1 p1"], float(ras[0]), float(ras[1]), float(ras[2]))
    node.RemoveNthControlPoint(idx["C-LV s0 p1"])  # deleting shifts later points; descriptions travel along
    storage = node.GetStorageNode()
    out = tmp_path / "saved_by_slicer.mrk.json"
    storage.SetFileName(str(out))
    assert storage.WriteData(node) == 1

    back = read_markups(out)
    got = {_key(lm): lm for lm in back.landmarks}
    assert set(got) == {("A-RVI", 0, 1), ("I-RVI", 0, 1), ("A-RVI", 1, 1), ("I-RVI", 1, 1), ("C-LV", 1, 1)}
    a = got[("A-RVI", 0, 1)]
    assert a.found and a.corrected and a.confidence == 1.0 and a.flag == "high"
    np.testing.assert_allclose(a.position, moved_lps, atol=1e-6)
    i_placed = got[("I-RVI", 1, 1)]
    assert i_placed.found and i_placed.corrected
    np.testing.assert_allclose(i_placed.position, placed_lps, atol=1e-6)
    c_unset = got[("C-LV", 1, 1)]
    assert not c_unset.found and c_unset.corrected and c_unset.flag == "absent"
    for key in (("I-RVI", 0, 1), ("A-RVI", 1, 1)):  # untouched: the model's values
        lm, orig = got[key], lmset.get(*key)
        assert not lm.corrected and lm.flag == orig.flag
        assert lm.confidence == pytest.approx(orig.confidence, abs=0.0051)
        np.testing.assert_allclose(lm.position, orig.position, atol=1e-6)
