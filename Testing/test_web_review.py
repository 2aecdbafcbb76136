"""The review web app (``cardiac-landmarks review``) as a reader uses it: a real server on a real ACDC
cohort, driven by Debian's Chromium through Playwright, and its access rules over real HTTP.

Needs the ``web`` extra (trame-slicer, slicer-core 5.11) and Playwright with ``/usr/bin/chromium``
(never a downloaded browser). Without them the tests skip, except when
``CARDIAC_LANDMARKS_WEB_TESTS=1`` (the CI step that installs them), where they fail.
Screenshots go to ``$CARDIAC_LANDMARKS_TEST_OUTPUT/web_review`` (default ``Testing/output/web_review``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
WEB_REQUIRED = os.environ.get("CARDIAC_LANDMARKS_WEB_TESTS", "") == "1"


def _need(ok: bool, what: str, module: bool = False) -> None:
    if ok:
        return
    if WEB_REQUIRED:
        pytest.fail(f"{what} (CARDIAC_LANDMARKS_WEB_TESTS=1)", pytrace=False)
    pytest.skip(what, allow_module_level=module)


_need(importlib.util.find_spec("trame_slicer") is not None, "trame-slicer not installed (pip install '.[web]')", True)
_need(importlib.util.find_spec("aiohttp") is not None, "aiohttp not installed (comes with the web extra)", True)

pytestmark = pytest.mark.data


def _output_dir() -> Path:
    base = Path(os.environ.get("CARDIAC_LANDMARKS_TEST_OUTPUT", REPO / "Testing" / "output"))
    out = base / "web_review"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def cohort_src(tmp_path_factory, acdc_dir) -> Path:
    """A batch folder of two ``cardiac-landmarks detect`` results (ACDC patient001 and 101, ED)."""
    from CardiacLandmarksLib.cli import main as cli_main

    root = tmp_path_factory.mktemp("cohort_src")
    for name in ("patient001_ED", "patient101_ED"):
        assert cli_main(["detect", str(acdc_dir / f"{name}.nii.gz"), "-o", str(root / name), "--no-progress"]) == 0
    return root


@pytest.fixture
def cohort(cohort_src, tmp_path) -> Path:
    dst = tmp_path / "cohort"
    shutil.copytree(cohort_src, dst)
    return dst


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Server:
    """``python -m CardiacLandmarksLib.web PATH ...`` in a subprocess; ``url`` and ``token`` from what it prints."""

    def __init__(self, path: Path, *args: str, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, _free_port(host)
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = path.parent / f"server_{self.port}.log"
        self._log_fh = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "CardiacLandmarksLib.web", str(path), "--host", host, "--port", str(self.port),
             *args], stdout=subprocess.PIPE, stderr=self._log_fh, text=True, env=env, cwd=str(REPO))
        self.lines: list[str] = []
        self.url = self.token = None
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip())
            if line.startswith("Access token"):
                self.token = line.split(":", 1)[1].strip()
            if line.startswith("Open "):
                self.url = line.split(" ", 1)[1].strip()
            if line.startswith("Stop with"):
                break
        if self.url is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines) + self.log.read_text())
        self.base = f"http://{host}:{self.port}"
        while time.time() < deadline:  # wait until it answers (any status)
            try:
                urllib.request.urlopen(self.base + "/", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_fh.close()


def _get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_token_refuses_requests_without_it(cohort):
    """Bound to 127.0.0.2 with --require-token (the rule every non-loopback address gets): every HTTP
    request and the websocket need the printed token; cross-origin requests are refused."""
    import asyncio

    import aiohttp

    srv = Server(cohort, "--require-token", host="127.0.0.2")
    try:
        assert srv.token and f"?token={srv.token}" in srv.url
        base = srv.base
        assert _get(base + "/")[0] == 403
        assert _get(base + "/?token=wrong")[0] == 403
        assert _get(base + "/index.html")[0] == 403
        assert _get(base + "/", {"Authorization": "token nope"})[0] == 403
        status, headers, body = _get(base + f"/?token={srv.token}")
        assert status == 200 and b"<html" in body.lower()
        cookie = headers.get("Set-Cookie", "")
        assert "cardiac_landmarks_token=" in cookie and "HttpOnly" in cookie
        assert _get(base + "/", {"Authorization": f"token {srv.token}"})[0] == 200
        assert _get(base + "/", {"Cookie": f"cardiac_landmarks_token={srv.token}"})[0] == 200
        assert _get(base + "/", {"Cookie": f"cardiac_landmarks_token={srv.token}",
                                 "Origin": "http://evil.example"})[0] == 403
        # path traversal in the URL never serves a file from outside
        status, _h, body = _get(base + f"/%2e%2e/%2e%2e/%2e%2e/etc/passwd?token={srv.token}")
        assert status != 200 and b"root:" not in body

        async def ws(headers):
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.ws_connect(base.replace("http", "ws") + "/ws", headers=headers) as conn:
                        await conn.close()
                        return 101
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

        assert asyncio.run(ws({})) == 403
        assert asyncio.run(ws({"Cookie": "cardiac_landmarks_token=wrong"})) == 403
        assert asyncio.run(ws({"Cookie": f"cardiac_landmarks_token={srv.token}"})) == 101

        # a real browser: refused without the token, the whole app works from the printed URL
        if CHROMIUM.exists() and importlib.util.find_spec("playwright") is not None:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                response = page.goto(base + "/")
                assert response.status == 403 and "access token" in page.content()
                page.goto(srv.url)
                page.wait_for_selector(".remote-controlled-area img", timeout=60000)
                page.wait_for_selector("#cl-queue .v-list-item", timeout=30000)
                page.screenshot(path=str(_output_dir() / "00_token_url.png"))
                browser.close()
    finally:
        srv.stop()


def test_loopback_default_needs_no_token(cohort):
    srv = Server(cohort)
    try:
        assert srv.token is None and "token" not in srv.url
        assert any("ssh -L" in line for line in srv.lines)
        assert _get(srv.base + "/")[0] == 200
        assert _get(srv.base + "/", {"Origin": "http://evil.example"})[0] == 403
    finally:
        srv.stop()


def test_browser_names_never_leave_the_folder(cohort, tmp_path):
    """The case the page asks for must be a result folder inside PATH: '../', absolute paths and
    unknown names are refused and the app keeps its case."""
    from CardiacLandmarksLib.web.app import ReviewApp

    outside = tmp_path / "outside"
    shutil.copytree(cohort / "patient001_ED", outside)  # a valid result folder, but not under PATH
    lost = cohort / "a_lost_image"  # sorted first; its image is gone: skipped at start, a message when chosen
    shutil.copytree(cohort / "patient001_ED", lost)
    doc = json.loads((lost / "landmarks.json").read_text())
    doc["source"] = str(tmp_path / "gone.nii.gz")
    (lost / "landmarks.json").write_text(json.dumps(doc))
    app = ReviewApp(cohort)
    assert sorted(app.cases) == ["a_lost_image", "patient001_ED", "patient101_ED"]
    assert app.case.name == "patient001_ED"
    assert app.select_case("a_lost_image") is False and app.case.name == "patient001_ED"
    assert "cannot load the source image" in app.state.message
    shown = app.case.name
    for bad in ("../outside", "../../", str(outside), str(cohort / "patient101_ED"), "/etc", "nope"):
        assert app.select_case(bad) is False
        assert app.case.name == shown
        assert app.state.message.startswith("Refused")
    assert app.select_case("patient101_ED") is True and app.case.name == "patient101_ED"


@pytest.fixture(scope="module")
def oriented_cohort_src(tmp_path_factory, data_root) -> Path:
    """Two ``detect`` results: M&Ms-2 001 SAX ED, whose header has x and y negated (the RV-side check warns
    for the whole series), and ACDC patient001 ED (no orientation: no check, no warning)."""
    from CardiacLandmarksLib.cli import main as cli_main

    root = tmp_path_factory.mktemp("oriented_src")
    for out, image in (("mnms2_001_SA_ED", data_root / "mnms2" / "001" / "001_SA_ED.nii.gz"),
                       ("patient001_ED", data_root / "acdc" / "patient001_ED.nii.gz")):
        assert cli_main(["detect", str(image), "-o", str(root / out), "--no-progress"]) == 0
    return root


def test_series_warnings_shown_as_a_banner(oriented_cohort_src, tmp_path):
    """A series-level warning of landmarks.json (here the RV on the patient's left-posterior in the M&Ms-2
    file) is in the page's state for its case only, and the case list names the case as having one."""
    from CardiacLandmarksLib.results import read_result
    from CardiacLandmarksLib.web.app import ReviewApp

    cohort = tmp_path / "oriented"
    shutil.copytree(oriented_cohort_src, cohort)
    written = read_result(cohort / "mnms2_001_SA_ED").warnings
    assert len(written) == 1 and "RV lies on the patient's left" in written[0]
    assert read_result(cohort / "patient001_ED").warnings == []
    app = ReviewApp(cohort)
    assert app.case.name == "mnms2_001_SA_ED"
    assert app.state.case_warnings == written
    titles = {c["value"]: c["title"] for c in app.state.cases}
    assert titles == {"mnms2_001_SA_ED": "mnms2_001_SA_ED (warning)", "patient001_ED": "patient001_ED"}
    assert app.select_case("patient001_ED") is True
    assert app.state.case_warnings == []
    assert app.select_case("mnms2_001_SA_ED") is True
    assert app.state.case_warnings == written


def test_long_axis_correction_is_retracked_as_in_slicer(tmp_path, data_root):
    """A reader drags AL-P on one phase of a tracked 4CH cine (M&Ms-2 001, 25 phases): the neighbouring phases
    follow through the library's retrack_landmark, as the Slicer module does; before, only the dragged phase
    changed and the other 24 kept the old track. The other landmarks stay as they were."""
    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.web.app import ReviewApp

    out = tmp_path / "lax"
    assert cli_main(["detect", str(data_root / "mnms2" / "001" / "001_LA_CINE.nii.gz"), "--view", "4ch", "-o",
                     str(out / "001_LA_CINE"), "--no-progress"]) == 0
    app = ReviewApp(out)
    case = app.case
    anchors = case.lmset.model["tracking"]["anchors"]["AL-P"]
    n_t = case.series.n_phases
    t = (anchors[0] + n_t // 2) % n_t  # half a cycle from the detection's anchor
    before = {(lm.name, lm.phase): np.asarray(lm.position, float).copy() for lm in case.lmset.landmarks}
    app.show_case(case.name, k=0, t=t)
    assert app.phase_t == t
    new_lps = before[("AL-P", t)] + case.series.direction[:, 0] * 6.0  # 6 mm along the image rows
    node = app._nodes["AL-P"]
    node.SetNthControlPointPosition(0, *[float(v) for v in app._lps_to_ras(new_lps)])
    app._on_point_changed("AL-P")  # what the end of a drag in the view calls
    lm = case.lmset.get("AL-P", 0, t)
    assert lm.corrected and np.allclose(lm.position, new_lps, atol=0.01)  # projected onto the slice plane
    assert sorted(case.lmset.model["tracking"]["anchors"]["AL-P"]) == sorted({*anchors, t})
    moved = [p for p in range(n_t) if p != t
             and np.linalg.norm(np.asarray(case.lmset.get("AL-P", 0, p).position) - before[("AL-P", p)]) > 0.5]
    assert (t - 1) % n_t in moved and (t + 1) % n_t in moved
    for name in ("IS-P", "APEX"):
        assert all(np.allclose(case.lmset.get(name, 0, p).position, before[(name, p)]) for p in range(n_t))
    assert f"Re-tracked through the {n_t} phases" in app.state.message
    assert case.dirty


def test_long_axis_retracking_in_the_page_says_so_first(tmp_path, data_root):
    """In the served page (an event loop running) a long-axis drag first shows the correction and 'Re-tracking
    AL-P through the 25 phases...', then re-tracks on the loop and says when it is done, with the same points as
    the library's rule. Before, the page froze for the re-tracking (2.9 s on a 50-phase cine) without a word."""
    import asyncio

    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.lax.tracking import correct_landmark as lax_correct
    from CardiacLandmarksLib.results import confirm_landmark
    from CardiacLandmarksLib.web.app import ReviewApp

    out = tmp_path / "lax"
    assert cli_main(["detect", str(data_root / "mnms2" / "001" / "001_LA_CINE.nii.gz"), "--view", "4ch", "-o",
                     str(out / "001_LA_CINE"), "--no-progress"]) == 0
    app = ReviewApp(out)
    case = app.case
    n_t = case.series.n_phases
    t = (case.lmset.model["tracking"]["anchors"]["AL-P"][0] + n_t // 2) % n_t
    app.show_case(case.name, k=0, t=t)
    before = {p: np.asarray(case.lmset.get("AL-P", 0, p).position, float).copy() for p in range(n_t)}
    new_lps = before[t] + case.series.direction[:, 0] * 6.0
    node = app._nodes["AL-P"]
    node.SetNthControlPointPosition(0, *[float(v) for v in app._lps_to_ras(new_lps)])
    dragged = np.asarray(case.series.ijk_to_lps(np.r_[app._ras_to_ijk(np.array(node.GetNthControlPointPosition(0),
                                                                                float))[:2], 0.0]), float)
    expected = lax_correct(case.series, case.lmset, "AL-P", t, dragged, k=0)

    async def drag_in_the_page():
        app._on_point_changed("AL-P")  # what the end of a drag calls
        first = app.state.message
        untouched = all(np.allclose(case.lmset.get("AL-P", 0, p).position, before[p]) for p in range(n_t) if p != t)
        for _ in range(400):
            await asyncio.sleep(0.05)
            if "re-tracked through" in app.state.message:
                break
        return first, untouched

    first, untouched = asyncio.run(drag_in_the_page())
    assert f"Re-tracking AL-P through the {n_t} phases..." in first and untouched
    assert f"AL-P re-tracked through the {n_t} phases" in app.state.message
    for p in range(n_t):
        np.testing.assert_allclose(case.lmset.get("AL-P", 0, p).position, expected.get("AL-P", 0, p).position,
                                   atol=1e-6)
    assert case.dirty

    # while re-trackings run, the reader corrects AL-P on two more phases and confirms an IS-P point: the
    # confirmation is kept, and AL-P ends as the library re-tracks it from all its corrections (the superseded
    # result is never applied over the later one)
    t2 = (t + 3) % n_t
    is_p = next(lm for lm in case.lmset.landmarks if lm.name == "IS-P" and lm.flag == "low")

    t3 = (t + 6) % n_t

    async def two_more_changes():
        for tt in (t2, t3):  # two AL-P corrections in a row: the first one's re-tracking is superseded
            app.show_case(case.name, k=0, t=tt)
            moved = np.asarray(case.lmset.get("AL-P", 0, tt).position, float) - case.series.direction[:, 1] * 4.0
            app._nodes["AL-P"].SetNthControlPointPosition(0, *[float(v) for v in app._lps_to_ras(moved)])
            app._on_point_changed("AL-P")
        assert app._retracks[(case.name, "AL-P", 0)][0] >= 3
        lm = confirm_landmark(case.lmset, "IS-P", 0, is_p.phase)
        app._after_change(case, lm)  # what Confirm does (IS-P re-tracked too)
        for _ in range(600):
            await asyncio.sleep(0.05)
            if all(task.done() for _, task in app._retracks.values()):
                break

    asyncio.run(two_more_changes())
    assert case.lmset.get("IS-P", 0, is_p.phase).confirmed
    both = lax_correct(case.series, case.lmset, "AL-P", t3, np.asarray(case.lmset.get("AL-P", 0, t3).position), k=0)
    assert all(case.lmset.get("AL-P", 0, x).corrected for x in (t, t2, t3))
    for p in range(n_t):
        np.testing.assert_allclose(case.lmset.get("AL-P", 0, p).position, both.get("AL-P", 0, p).position, atol=1e-6)


def test_a_doubtful_absence_stays_in_the_queue_and_says_why(cohort):
    """With 'include absent points' unticked, the RV-insertion pairs the network nearly found stay in the queue
    (ACDC patient101 ED, slice 0, has one with the bundled model), first among the absent points when ticked, and
    the banner says why when the reader goes to one; the clear absences leave the queue."""
    from CardiacLandmarksLib.web.app import ReviewApp

    app = ReviewApp(cohort)
    every = app._queue()
    absent = [q for q in every if q["flag"] == "absent"]
    doubtful = [q for q in absent if q["doubt"]]
    assert doubtful and len(doubtful) < len(absent), "patient101 ED has a pair the network nearly found"
    assert absent[: len(doubtful)] == doubtful  # they lead the absent points
    assert all(q["subtitle"] == f"absent: {q['doubt']}" and q["doubt"].startswith("nearly found: ")
               for q in doubtful)
    app.state.include_absent = False
    kept = app._queue()
    assert [q for q in kept if q["flag"] == "absent"] == doubtful
    assert {q["key"] for q in kept} == {q["key"] for q in every if q["flag"] != "absent" or q["doubt"]}
    app.go_to(doubtful[0]["key"])
    assert f"{doubtful[0]['name']} on slice {doubtful[0]['slice']}: absent, nearly found: " in app.state.message
    assert app.state.message.endswith("Press Place, then click in the view if it is there.")


def test_long_axis_confirmation_is_an_anchor(tmp_path, data_root):
    """Confirm on a low point of the tracked M&Ms-2 4CH cine: the point stays where it is, leaves the queue, and
    the landmark is re-tracked from it as from a correction (the library's re-tracking with that anchor)."""
    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.lax.tracking import correct_landmark as lax_correct
    from CardiacLandmarksLib.web.app import ReviewApp

    out = tmp_path / "lax"
    assert cli_main(["detect", str(data_root / "mnms2" / "001" / "001_LA_CINE.nii.gz"), "--view", "4ch", "-o",
                     str(out / "001_LA_CINE"), "--no-progress"]) == 0
    app = ReviewApp(out)
    case = app.case
    queue = [q for q in app._queue() if q["flag"] == "low"]
    assert queue, "the M&Ms-2 4CH cine has low points with the bundled model"
    q = queue[0]
    name, t = q["name"], q["phase"]
    was = case.lmset.get(name, 0, t)
    expected = lax_correct(case.series, case.lmset, name, t, np.asarray(was.position, float), k=0)
    app.go_to(q["key"])
    assert app.state.current_low and app.phase_t == t
    # the reader steps to another phase and presses Confirm: the point is shown again, nothing is confirmed
    # (before: nothing happened when the case had changed, and a point out of view was confirmed otherwise)
    app.set_phase((t + 1) % case.series.n_phases)
    app.confirm_current()
    assert app.phase_t == t and not case.lmset.get(name, 0, t).corrected and "shown again" in app.state.message
    app.confirm_current()
    lm = case.lmset.get(name, 0, t)
    assert lm.confirmed and lm.corrected and np.allclose(lm.position, was.position)
    assert q["key"] not in {x["key"] for x in app._queue()}
    assert "confirmed where it is" in app.state.message and case.dirty
    for p in range(case.series.n_phases):
        assert np.allclose(case.lmset.get(name, 0, p).position, expected.get(name, 0, p).position, atol=1e-6)
    assert t in case.lmset.model["tracking"]["anchors"][name]


def test_unsaved_corrections_survive_a_stopped_app(tmp_path, data_root):
    """The reader confirms a point and the app is stopped before Save (a new app on the same folder stands for the
    next start): the correction comes back, the case is marked unsaved and the page says so. After Save the
    next start has nothing to restore. Before, corrections not saved were lost with the server."""
    import asyncio

    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.results import confirm_landmark
    from CardiacLandmarksLib.results.folders import UNSAVED_FILE
    from CardiacLandmarksLib.web.app import ReviewApp

    out = tmp_path / "cohort" / "patient001_ED"
    assert cli_main(["detect", str(data_root / "acdc" / "patient001_ED.nii.gz"), "-o", str(out), "--no-progress"]) == 0
    app = ReviewApp(out.parent)
    q = next(x for x in app._queue() if x["flag"] == "low")
    app.go_to(q["key"])
    app.confirm_current()
    assert (out / UNSAVED_FILE).is_file()
    del app

    again = ReviewApp(out.parent)
    case = again.cases["patient001_ED"]
    lm = case.lmset.get(q["name"], q["slice"], q["phase"])
    assert again.restored == ["patient001_ED"] and case.dirty and lm.confirmed
    assert "Restored the unsaved corrections of patient001_ED" in again.state.message
    assert q["key"] not in {x["key"] for x in again._queue()}
    # a correction while the save runs (here: the reader's next Confirm lands during the write) is not saved by it:
    # the case stays unsaved and its kept copy stays (before, the case was marked saved)
    import CardiacLandmarksLib.web.app as web_app

    real_save = web_app.save_result
    nxt = next(x for x in again._queue() if x["flag"] == "low")

    def save_then_change(*args, **kwargs):
        written = real_save(*args, **kwargs)
        # what Confirm does to the case (no view work: this runs in the save's worker thread)
        lm = confirm_landmark(case.lmset, nxt["name"], nxt["slice"], nxt["phase"])
        again._after_change(case, lm)
        return written

    web_app.save_result = save_then_change
    try:
        asyncio.run(again.save())
    finally:
        web_app.save_result = real_save
    assert case.dirty and (out / UNSAVED_FILE).exists() and "not saved yet: Save again" in again.state.message
    asyncio.run(again.save())
    assert not (out / UNSAVED_FILE).exists() and not case.dirty
    third = ReviewApp(out.parent)
    assert third.restored == [] and not third.cases["patient001_ED"].dirty
    assert third.cases["patient001_ED"].lmset.get(q["name"], q["slice"], q["phase"]).confirmed  # saved



def test_a_save_over_a_result_written_again_is_refused_once(tmp_path, data_root):
    """The reader confirms a point; meanwhile the folder is written again (here detect re-run without TTA: another
    result). Save wrote the app's older result with the confirmation over the new one without a word; now the first
    Save is refused, naming it, and writes nothing; a second Save writes over it knowingly."""
    import asyncio

    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.results import read_result
    from CardiacLandmarksLib.web.app import ReviewApp

    out = tmp_path / "cohort" / "patient001_ED"
    src = str(data_root / "acdc" / "patient001_ED.nii.gz")
    assert cli_main(["detect", src, "-o", str(out), "--no-progress"]) == 0
    first = (out / "landmarks.json").read_bytes()
    app = ReviewApp(out.parent)
    q = next(x for x in app._queue() if x["flag"] == "low")
    app.go_to(q["key"])
    app.confirm_current()
    assert cli_main(["detect", src, "-o", str(out), "--no-progress", "--no-tta"]) == 0
    rerun = (out / "landmarks.json").read_bytes()
    assert rerun != first
    asyncio.run(app.save())
    message = app.state.message
    assert f"the result in {out} was written again at " in message and "since this review read it: not saved" in message
    assert "Save again to write your corrections over it anyway" in message
    assert (out / "landmarks.json").read_bytes() == rerun and app.cases["patient001_ED"].dirty
    asyncio.run(app.save())
    assert "saved" in app.state.message and not app.cases["patient001_ED"].dirty
    assert read_result(out).get(q["name"], q["slice"], q["phase"]).confirmed


def test_study_output_with_an_ed_es_pair_reviews_both_phases(tmp_path, data_root):
    """`cardiac-landmarks review` on a `study` output folder (M&Ms-2 001: the SAX ED/ES pair and the 4CH cine):
    an ES point of the SAX result opens on phase 1 of the pair. Before, the app loaded the ED file only (the
    result's 'source') and going to a phase-1 point raised IndexError in the page's handler; a result that names
    only one file of a pair now gets a named message, no crash."""
    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.web.app import ReviewApp

    out = tmp_path / "study"
    assert cli_main(["study", str(data_root / "mnms2" / "001"), "-o", str(out)]) == 0
    app = ReviewApp(out)
    assert set(app.cases) == {"001_SA_sax", "001_LA_CINE_lax"}
    assert app.case.name == "001_LA_CINE_lax"  # the long-axis case is shown first
    es = next(q for q in app._queue() if q["case"] == "001_SA_sax" and q["phase"] == 1 and q["flag"] == "low")
    app.go_to(es["key"])
    assert (app.case.name, app.slice_k, app.phase_t) == ("001_SA_sax", es["slice"], 1)
    assert app.case.series.n_phases == 2 and es["name"] in app._probe()["points"]
    # the view shows the SAX slices in their own plane (before, after the 4CH case it cut across the stack)
    m = app.slice_node.GetSliceToRAS()
    view_normal = np.array([m.GetElement(r, 2) for r in range(3)])
    stack_normal = app._ijk_to_ras[:3, 2] / np.linalg.norm(app._ijk_to_ras[:3, 2])
    assert abs(float(view_normal @ stack_normal)) == pytest.approx(1.0, abs=1e-6)
    assert app.state.current_key == es["key"] and "low confidence" in app.state.message
    # the reader confirms it and saves: the message points to apply-review, which carries it into study.json
    import asyncio

    from CardiacLandmarksLib.study.review import apply_review

    app.confirm_current()
    asyncio.run(app.save())
    assert f"cardiac-landmarks apply-review {out}" in app.state.message, app.state.message
    upd = apply_review(out)
    assert [(a.series, a.confirmed) for a in upd.analyses if a.task == "sax"] == [("001_SA", 1)]
    # an older result that recorded the ED file only: refused by name when opened
    doc = json.loads((out / "001_SA_sax" / "landmarks.json").read_text())
    doc.pop("source_files")
    (out / "001_SA_sax" / "landmarks.json").write_text(json.dumps(doc))
    old = ReviewApp(out)
    item = next(q for q in old._queue() if q["case"] == "001_SA_sax")
    old.go_to(item["key"])
    assert "cannot load the source image" in old.state.message and "1 phase" in old.state.message
    assert old.state.current_key != item["key"]


def test_oblique_short_axis_stack_is_shown_in_its_own_plane(tmp_path, data_root):
    """An LGE stack with real oblique geometry (MS-CMRSeg subject1): the view's normal is the stack's slice axis and
    the patient's head is up, as on the library's canvas; a point drawn there maps back to its own slice. Before,
    Slicer's RotateToVolumePlane (from the axial view) took the in-plane axis nearest to 'superior' as the normal:
    the view cut across the stack (normal . slice axis = 0)."""
    from CardiacLandmarksLib.cli import main as cli_main
    from CardiacLandmarksLib.core.geometry import SUPERIOR_LPS, lps_to_ras
    from CardiacLandmarksLib.web.app import ReviewApp

    out = tmp_path / "lge"
    assert cli_main(["detect", str(data_root / "lge" / "mscmr" / "subject1_DE.nii.gz"), "-o", str(out / "s1"),
                     "--no-progress"]) == 0
    app = ReviewApp(out)
    k = next(lm.slice for lm in app.case.lmset.landmarks if lm.name == "C-LV" and lm.found)
    app.set_slice(k)
    m = app.slice_node.GetSliceToRAS()
    right, up, normal = (np.array([m.GetElement(r, c) for r in range(3)]) for c in range(3))
    stack = app._ijk_to_ras[:3, 2] / np.linalg.norm(app._ijk_to_ras[:3, 2])
    assert abs(float(normal @ stack)) == pytest.approx(1.0, abs=1e-6)
    assert float(up @ lps_to_ras(np.asarray(SUPERIOR_LPS, float))) > 0.3  # head up
    ras = np.array(app._nodes["C-LV"].GetNthControlPointPosition(0))
    assert app._ras_to_ijk(ras)[2] == pytest.approx(k, abs=1e-6)


def test_browser_shows_the_series_warning(oriented_cohort_src, tmp_path):
    """Chromium: the M&Ms-2 case opens with its warning in a banner that a reader sees without scrolling."""
    cohort = tmp_path / "oriented"
    shutil.copytree(oriented_cohort_src, cohort)
    with _opened_page(cohort) as page:
        banner = page.locator("#cl-warnings .v-alert")
        banner.first.wait_for(timeout=30000)
        assert banner.count() == 1
        text = banner.first.text_content()
        assert "Warning for this series" in text and "RV lies on the patient's left" in text
        assert "Check the image orientation" in text
        box = banner.first.bounding_box()
        assert box["y"] + box["height"] <= 900  # in the first screen of the drawer
        time.sleep(1.5)
        page.screenshot(path=str(_output_dir() / "06_series_warning.png"))


def test_browser_long_axis_drag_says_re_tracking_first(tmp_path, data_root):
    """Chromium on the M&Ms-2 4CH cine: drag AL-P 30 px; the page shows the correction with 'Re-tracking AL-P
    through the 25 phases...' while the library re-tracks, then 'AL-P re-tracked through the 25 phases'. Before, the
    page froze for the re-tracking and showed only the end."""
    from CardiacLandmarksLib.cli import main as cli_main

    folder = tmp_path / "lax"
    assert cli_main(["detect", str(data_root / "mnms2" / "001" / "001_LA_CINE.nii.gz"), "--view", "4ch", "-o",
                     str(folder / "001_LA_CINE"), "--no-progress"]) == 0
    with _opened_page(folder) as page:
        time.sleep(2)
        probe = _probe(page)
        box = page.locator(".remote-controlled-area").bounding_box()
        pt = probe["points"]["AL-P"]
        _drag(page, box["x"] + pt["fx"] * box["width"], box["y"] + pt["fy"] * box["height"], 30)
        first = _wait_message(page, "Re-tracking AL-P through the 25 phases", timeout_s=10)
        assert "(corrected)" in first
        _wait_message(page, "AL-P re-tracked through the 25 phases", timeout_s=30)
        page.screenshot(path=str(_output_dir() / "07_lax_retracked.png"))


@contextlib.contextmanager
def _opened_page(folder: Path):
    """``cardiac-landmarks review folder`` in a subprocess and Debian's Chromium on its page (1400 x 900),
    the slice view drawn; yields the Playwright page, stops both afterwards."""
    _need(CHROMIUM.exists(), f"{CHROMIUM} missing (apt-get install chromium)")
    _need(importlib.util.find_spec("playwright") is not None, "playwright not installed (pip install playwright)")
    from playwright.sync_api import sync_playwright

    srv = Server(folder)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(srv.url)
            page.wait_for_selector(".remote-controlled-area img", timeout=60000)
            yield page
            browser.close()
    finally:
        srv.stop()


def _probe(page) -> dict:
    return json.loads(page.locator("#cl-probe").text_content())


def _drag(page, x: float, y: float, dx_px: float) -> None:
    """Drag the point at page pixel (x, y) by ``dx_px`` to the right, as a reader does (hover, press, move, release;
    the pauses let the view's widget pick the point up)."""
    page.mouse.move(x - 6, y)
    time.sleep(0.3)
    page.mouse.move(x, y)
    time.sleep(0.8)
    page.mouse.down()
    time.sleep(0.3)
    page.mouse.move(x + dx_px, y, steps=12)
    time.sleep(0.5)
    page.mouse.up()


def _wait_message(page, text: str, timeout_s: float = 20.0) -> str:
    deadline = time.time() + timeout_s
    msg = ""
    while time.time() < deadline:
        msg = page.locator("#cl-message").text_content() or ""
        if text in msg:
            return msg
        time.sleep(0.2)
    raise AssertionError(f"message {text!r} not shown; last message: {msg!r}")


def _click_next(page) -> str:
    """Click "Next flagged" and wait until the page shows the new point (the message changes)."""
    old = page.locator("#cl-message").text_content() or ""
    page.click("#cl-next")
    deadline = time.time() + 30
    while time.time() < deadline:
        msg = page.locator("#cl-message").text_content() or ""
        if msg != old and " on slice " in msg:
            time.sleep(0.5)  # let the view and the probe follow
            return msg
        time.sleep(0.1)
    raise AssertionError(f"'Next flagged' did not move on from {old!r}")


def test_browser_review_drag_place_save(cohort):
    """Chromium: Next flagged -> a low-confidence A/I-RVI; drag it 40 px to the right; Save. The saved
    landmarks.json has the point moved by 40 px x (mm per screen pixel) along the image columns, marked
    corrected with confidence 1, and a different RVI angle on that slice. Then place an absent point."""
    from CardiacLandmarksLib.io.load import load_series
    from CardiacLandmarksLib.io.markups import read_markups
    from CardiacLandmarksLib.results import read_result

    shots = _output_dir()
    before = {p.name: read_result(p) for p in cohort.iterdir()}
    with _opened_page(cohort) as page:
        time.sleep(2)
        page.screenshot(path=str(shots / "01_opened.png"))
        assert page.locator("#cl-warnings .v-alert").count() == 0  # ACDC: no series warning, no banner
        n_flagged = int(page.locator("#cl-n-flagged").text_content().split()[0])
        assert n_flagged == sum(
            lm.flag in ("low", "absent") for s in before.values() for lm in s.landmarks)

        # Next flagged until a low-confidence RV insertion point that has its slice's other points
        for _ in range(n_flagged):
            msg = _click_next(page)
            probe = _probe(page)
            name = msg.split(": ", 1)[1].split(" on slice")[0]
            if "low confidence" in msg and name in ("A-RVI", "I-RVI") and len(probe["points"]) == 3:
                break
        else:
            pytest.fail("no low-confidence RV insertion point with its slice complete in the queue")
        # the banner says why the point is low (every low SAX point carries a reason, Landmark.doubt)
        assert " — " in msg and ("disagree" in msg or "PHD-Net" in msg)
        time.sleep(1.5)
        case, k = probe["case"], probe["slice"]
        page.screenshot(path=str(shots / "02_next_flagged.png"))
        box = page.locator(".remote-controlled-area").bounding_box()
        mm_per_px = probe["fov_mm"][0] / box["width"]
        pt = probe["points"][name]
        dx_px = 40
        _drag(page, box["x"] + pt["fx"] * box["width"], box["y"] + pt["fy"] * box["height"], dx_px)
        _wait_message(page, "(corrected)")
        time.sleep(1.0)
        page.screenshot(path=str(shots / "03_dragged.png"))
        moved = _probe(page)["points"][name]
        assert (moved["fx"] - pt["fx"]) * box["width"] == pytest.approx(dx_px, abs=2.0)

        page.click("#cl-save")
        _wait_message(page, "saved")
        time.sleep(1.0)
        page.screenshot(path=str(shots / "04_saved.png"))

        # the saved files: moved by the screen offset in mm, corrected, new RVI angle
        old = before[case]
        new = read_result(cohort / case)
        a0, a1 = old.get(name, k, 0), new.get(name, k, 0)
        assert a1.corrected and a1.flag == "high" and a1.confidence == 1.0
        series = load_series(new.source)
        d_ijk = np.asarray(a1.ijk) - np.asarray(a0.ijk)
        expected_mm = dx_px * mm_per_px

        def angle(s):
            return next(m.value for m in s.measurements if m.name == "RVI angle" and m.slice == k)

        summary = {"case": case, "landmark": name, "slice": k, "drag_px": dx_px, "mm_per_px": mm_per_px,
                   "expected_mm": expected_mm, "moved_mm_columns": float(d_ijk[0] * series.spacing[0]),
                   "moved_mm_rows": float(d_ijk[1] * series.spacing[1]),
                   "moved_mm": float(np.linalg.norm(np.asarray(a1.position) - np.asarray(a0.position))),
                   "rvi_angle_before": angle(old), "rvi_angle_after": angle(new)}
        (shots / "drag_summary.json").write_text(json.dumps(summary, indent=1))
        assert abs(d_ijk[2]) < 1e-6  # stays on its slice
        assert summary["moved_mm_columns"] == pytest.approx(expected_mm, abs=0.6)  # image columns = screen x
        assert abs(summary["moved_mm_rows"]) < 0.6
        assert summary["moved_mm"] == pytest.approx(expected_mm, abs=0.6)
        assert abs(angle(new) - angle(old)) > 0.5
        assert len(list((cohort / case).glob("landmarks.mrk.json.bak-*"))) == 1  # the CLI's backup rule
        mk = read_markups(cohort / case, series).get(name, k, 0)
        assert mk.corrected and np.allclose(mk.position, a1.position, atol=1e-6)  # what Slicer reads back

        # a low point that is right: Next flagged until one, Confirm; it stays put, leaves the queue, is saved
        assert page.locator("#cl-confirm").is_enabled() is False or "low confidence" in msg
        for _ in range(n_flagged):
            msg = _click_next(page)
            if "low confidence" in msg:
                break
        else:
            pytest.fail("no other low-confidence point in the queue")
        assert msg.endswith("or press Confirm if it is right.")
        probe = _probe(page)
        conf_name, case3, k3 = msg.split(": ", 1)[1].split(" on slice")[0], probe["case"], probe["slice"]
        was = read_result(cohort / case3).get(conf_name, k3, 0)
        n_before = int(page.locator("#cl-n-flagged").text_content().split()[0])
        page.click("#cl-confirm")
        _wait_message(page, "confirmed where it is")
        time.sleep(1.0)
        page.screenshot(path=str(shots / "04b_confirmed.png"))
        assert int(page.locator("#cl-n-flagged").text_content().split()[0]) == n_before - 1
        assert page.locator("#cl-confirm").is_enabled() is False
        page.click("#cl-save")
        _wait_message(page, "saved")
        kept = read_result(cohort / case3).get(conf_name, k3, 0)
        assert kept.confirmed and kept.corrected and kept.flag == "high" and kept.confidence == 1.0
        assert np.allclose(kept.position, was.position, atol=1e-9)
        assert read_markups(cohort / case3, load_series(new.source if case3 == case else
                                                        read_result(cohort / case3).source)).get(
            conf_name, k3, 0).confirmed

        # an absent point: Next flagged until one, Place, click in the view
        for _ in range(n_flagged):
            msg = _click_next(page)
            if "not found" in msg:
                break
        else:
            pytest.fail("no absent point in the queue")
        time.sleep(1.0)
        probe = _probe(page)
        absent_name = msg.split(": ", 1)[1].split(" on slice")[0]
        case2, k2 = probe["case"], probe["slice"]
        page.click("#cl-place")
        _wait_message(page, "Click in the view")
        time.sleep(0.5)
        page.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
        _wait_message(page, "(corrected)")
        time.sleep(1.0)
        page.screenshot(path=str(shots / "05_placed.png"))
        page.click("#cl-save")
        _wait_message(page, "saved")
        placed = read_result(cohort / case2).get(absent_name, k2, 0)
        assert placed.found and placed.corrected and placed.confidence == 1.0
        assert placed.ijk[2] == pytest.approx(k2)
