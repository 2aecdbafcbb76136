"""Issue 15 in the Slicer module: the RVI measurements table and the perfusion AHA table show the
library's status (ok | review | n/a) with what to check; a correction turns a review value ok.

Runs on Slicer's real MRML (slicer-core wheel, see slicer_stubs) with the real ACDC patient001.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer_stubs  # noqa: E402

slicer_stubs.install()

import slicer  # noqa: E402
from CardiacLandmarksModuleLib import nodes  # noqa: E402
from CardiacLandmarksModuleLib import perfusion as panel  # noqa: E402

import CardiacLandmarks as module  # noqa: E402
from CardiacLandmarksLib.core import geometry  # noqa: E402


def _status_rows(tableNode) -> dict:
    t = tableNode.GetTable()
    col = {n: t.GetColumnByName(n) for n in ("Measurement", "Slice", "Phase", "Status")}
    return {(col["Measurement"].GetValue(r), int(col["Slice"].GetValue(r)), int(col["Phase"].GetValue(r))):
            col["Status"].GetValue(r) for r in range(t.GetNumberOfRows())}


@pytest.mark.data
def test_rvi_table_status_follows_the_library_and_corrections(acdc_dir):
    slicer_stubs.newScene()
    logic = module.CardiacLandmarksLogic()
    hub = logic.detect(slicer.util.loadVolume(str(acdc_dir / "patient001_ED.nii.gz")), device="cpu")
    lmset = logic.landmarkSetFromResult(hub)
    rows = _status_rows(logic.resultTable(hub))
    assert rows.keys() == {(m.name, m.slice, m.phase) for m in lmset.measurements}
    for m in lmset.measurements:
        text = rows[(m.name, m.slice, m.phase)]
        assert text == nodes.measurementStatusText(m)
        assert text.split(":")[0] == m.status
        if m.status == "review":
            assert text == f"review: {m.caveat()}" and "(low " in text
    back = {(m.name, m.slice, m.phase): m.status for m in nodes.readMeasurementsTable(logic.resultTable(hub))}
    assert back == {(m.name, m.slice, m.phase): m.status for m in lmset.measurements}
    review = [m for m in lmset.measurements if m.name == "RVI angle" and m.status == "review"]
    assert review, "patient001 has RVI angles from low-confidence A-RVI points"
    # the reader moves the low A-RVI of one such slice (here: onto the same place): corrected -> ok
    m = review[0]
    a = lmset.get("A-RVI", m.slice, m.phase)
    pointList = logic.pointListNodes(hub)[m.slice]
    index = [pointList.GetNthControlPointLabel(i).split()[0] for i in range(pointList.GetNumberOfControlPoints())
             ].index("A-RVI")
    pointList.SetNthControlPointPosition(index, *geometry.lps_to_ras(np.asarray(a.position) + [0.5, 0.0, 0.0]))
    after = _status_rows(logic.resultTable(hub))
    c_lv = lmset.get("C-LV", m.slice, m.phase)
    expected = "ok (corrected)" if c_lv.flag == "high" else "review"
    assert after[("RVI angle", m.slice, m.phase)].startswith(expected)


def test_perfusion_table_has_a_status_column():
    slicer_stubs.newScene()
    st = {"mean": 0.1, "sd": 0.44, "n_pixels": 62, "unit": "ratio", "status": "review"}
    report = {"conditions": ["rest"], "units": {"upslope_index": "ratio"},
              "metric_labels": {"upslope_index": "upslope index"},
              "segments": [{"segment": s, "name": f"seg {s}", "territory": "LAD", "level": "base",
                            "rest": {"upslope_index": st}, "reserve": {},
                            "status": "review" if s == 2 else "ok",
                            "check": "check segment 2 rest upslope_index (review: sd 0.44 > mean 0.1)" if s == 2
                            else ""} for s in range(1, 17)],
              "global": {"rest": {"upslope_index": st}, "reserve": {}, "status": "n/a", "check": "not measured"}}
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "AHA")
    panel.fillSegmentTable(table, report)
    t = table.GetTable()
    status = t.GetColumnByName("Status")
    assert status is not None and table.GetColumnTitle("Status") == "Status"
    assert status.GetValue(1) == "review: check segment 2 rest upslope_index (review: sd 0.44 > mean 0.1)"
    assert status.GetValue(0) == "ok" and status.GetValue(16) == "n/a: not measured"


@pytest.mark.data
def test_a_correction_in_slicer_keeps_the_detections_input_warning(data_root, tmp_path):
    """An EMIDEC stack has no geometry (1 x 1 x 1 mm placeholder): its detection's values are review for the input.
    Opened in Slicer (Open result folder), every point of one slice moved by the reader: the table recomputed them
    from the points alone and showed 'ok (corrected)'; the input is still what it was, so they stay review."""
    from CardiacLandmarksLib.analysis import analyse_landmarks
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.sax.pipeline import SaxOptions

    series = load_series(data_root / "lge" / "emidec" / "Case_N006_DE.nii.gz")
    folder = tmp_path / "result"
    analyse_landmarks(series, "sax", SaxOptions(tta=False)).write(folder)
    slicer_stubs.newScene()
    logic = module.CardiacLandmarksLogic()
    hub = logic.openResult(str(folder))
    lmset = logic.landmarkSetFromResult(hub)
    rows = _status_rows(logic.resultTable(hub))
    angle = next(m for m in lmset.measurements if m.name == "RVI angle")
    assert rows[("RVI angle", angle.slice, angle.phase)].startswith("review") and "input" in rows[
        ("RVI angle", angle.slice, angle.phase)]
    pointList = logic.pointListNodes(hub)[angle.slice]
    labels = [pointList.GetNthControlPointLabel(i).split()[0] for i in range(pointList.GetNumberOfControlPoints())]
    for name in ("A-RVI", "I-RVI", "C-LV"):
        p = lmset.get(name, angle.slice, angle.phase)
        if p is not None and p.found:
            pointList.SetNthControlPointPosition(labels.index(name),
                                                 *geometry.lps_to_ras(np.asarray(p.position) + [0.5, 0.0, 0.0]))
    after = _status_rows(logic.resultTable(hub))[("RVI angle", angle.slice, angle.phase)]
    assert after.startswith("review") and "input" in after and "(low" not in after, after
    exported = logic.landmarkSetFromResult(hub)
    m = next(x for x in exported.measurements if (x.name, x.slice, x.phase) == ("RVI angle", angle.slice, 0))
    assert m.status == "review" and any(s.kind == "input" for s in m.sources)
