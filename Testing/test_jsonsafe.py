"""Every JSON file the tool writes is strict JSON (no NaN / Infinity), through one rule (io.jsonsafe)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from CardiacLandmarksLib.io.jsonsafe import dumps_strict, finite_json

REPO = Path(__file__).resolve().parents[1]


def strict_loads(text: str):
    """``json.loads`` that rejects NaN / Infinity, as JavaScript's JSON.parse and jq do."""

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_strict_loads_refuses_what_python_writes_by_default():
    with pytest.raises(ValueError, match="NaN"):
        strict_loads(json.dumps({"x": float("nan")}))


def test_finite_json_on_built_values():
    obj = {
        "nan32": np.float32("nan"), "inf": float("inf"), "minf": -math.inf, "half": np.float32(0.5),
        "count": np.int64(7), "flag": np.bool_(True), 3: "int key",
        "arr": np.array([[1.0, np.nan], [np.inf, 2.0]]), "tup": (1, np.float64("nan")),
        "pos_missing": [float("nan"), float("nan"), float("nan")], "pos": [1.0, float("nan"), 2.0],
        "nested": [{"e": np.float64("nan")}], "text": "NaN", "none": None,
    }
    out = finite_json(obj)
    assert out["nan32"] is None and out["inf"] is None and out["minf"] is None
    assert out["half"] == 0.5 and type(out["half"]) is float
    assert out["count"] == 7 and type(out["count"]) is int
    assert out["flag"] is True
    assert out["3"] == "int key" and 3 not in out
    assert out["arr"] == [[1.0, None], [None, 2.0]]
    assert out["tup"] == [1, None]
    assert out["pos_missing"] == [None, None, None]  # kept as a vector unless asked
    assert out["pos"] == [1.0, None, 2.0]
    assert out["nested"] == [{"e": None}] and out["text"] == "NaN" and out["none"] is None
    assert finite_json(obj, missing_vectors_as_null=True)["pos_missing"] is None
    assert finite_json(obj, missing_vectors_as_null=True)["pos"] == [1.0, None, 2.0]
    assert finite_json([], missing_vectors_as_null=True) == []
    # the input is not changed
    assert math.isnan(obj["nested"][0]["e"])
    back = strict_loads(dumps_strict(obj))
    assert back["arr"] == [[1.0, None], [None, 2.0]] and back["count"] == 7


def test_dumps_strict_names_what_it_cannot_write():
    with pytest.raises(TypeError):
        dumps_strict({"x": object()})
    assert strict_loads(dumps_strict({"p": Path("/a/b")}, default=str)) == {"p": "/a/b"}


def test_bundled_cards_and_fold_cards_are_strict_json():
    files = sorted((REPO / "Resources" / "Models").glob("*.json")) + sorted(
        (REPO / "Resources" / "Evaluation").rglob("*.json"))
    assert len(files) >= 8
    bad = []
    for f in files:
        try:
            strict_loads(f.read_text())
        except ValueError as exc:
            bad.append(f"{f.relative_to(REPO)}: {exc}")
    assert not bad, bad


def test_suite_table_json_is_strict():
    from CardiacLandmarksLib.evaluation.suite import SuiteRow, SuiteTable

    row = SuiteRow(name="built", n_cases=1, landmarks={"A-RVI": {"detection_rate": 1.0, "mean_mm": float("nan"),
                                                                   "n_present": 2}})
    text = SuiteTable([row], models={"m": {"version": "1"}}, seconds=np.float64(1.25)).to_json()
    d = strict_loads(text)
    assert d["rows"][0]["landmarks"]["A-RVI"]["mean_mm"] is None
    again = SuiteTable.from_dict(d)  # None reads back as NaN
    assert math.isnan(again.rows[0].landmarks["A-RVI"]["mean_mm"])


def test_run_manifest_is_strict_json_with_numbers_kept_as_numbers(tmp_path):
    from CardiacLandmarksLib.io.outputs import finish_run, prepare_output_dir

    out = tmp_path / "out"
    inp = tmp_path / "input.txt"
    inp.write_text("x")
    od = prepare_output_dir(out, [inp])
    od.begin()
    (out / "r.txt").write_text("r")
    finish_run(od, [inp], {"weight_kg": float("nan"), "spacing_mm": np.float32(1.5), "out": out}, [out / "r.txt"],
               models=[{"name": "m", "threshold": np.float64("inf")}], command="test")
    run = strict_loads((out / "run.json").read_text())
    assert run["options"]["weight_kg"] is None
    assert run["options"]["spacing_mm"] == 1.5  # a number, not the string "1.5"
    assert run["options"]["out"] == str(out)
    assert run["models"][0]["threshold"] is None


def test_batch_state_stores_a_record_with_a_missing_figure(tmp_path):
    from CardiacLandmarksLib.batch.state import BatchState

    class Spec:
        study_id, paths = "s1", ["a"]

    with BatchState(tmp_path / "state.sqlite") as st:
        st.sync([Spec()])
        st.finish({"study_id": "s1", "status": "done", "row": {"lv_ef_pct": float("nan"), "n": np.int64(2)},
                   "seconds": 1.0})
        rec = st.records()[0]
    assert rec["row"] == {"lv_ef_pct": None, "n": 2}
