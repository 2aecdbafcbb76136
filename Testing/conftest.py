"""Shared pytest fixtures.

Real data come from ``CARDIAC_LANDMARKS_DATA`` (default ``../shared/data``). A test that needs
it uses the ``data_root`` fixture (or ``require_data``): in CI (``CI=true``) a missing data set
is a failure, elsewhere a skip with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the library (repo root), the Slicer module and its ModuleLib (CardiacLandmarks/), and Testing/ itself
# (slicer_stubs): the Slicer-module tests import all three
for _folder in (Path(__file__).resolve().parent, REPO / "CardiacLandmarks", REPO):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from CardiacLandmarksLib.core.config import data_root as _data_root

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def reloads_at_pixel_size(folder: Path, mm: float):
    """Assert that a result written with a given pixel size records it and that a review (``results.load_source``)
    loads its image at that size, every found point on its own pixel; returns the result's landmark set."""
    import numpy as np

    from CardiacLandmarksLib import results

    lmset = results.read_result(folder, point_lists="ignore")
    assert lmset.source_pixel_size_mm == mm
    series = results.load_source(lmset, folder)
    assert tuple(series.spacing[:2]) == (mm, mm)
    found = [lm for lm in lmset.landmarks if lm.found]
    assert found
    for lm in found:
        np.testing.assert_allclose(series.lps_to_ijk(lm.position)[:2], lm.ijk[:2], atol=1e-6)
    return lmset


def require_data(*relative: str) -> Path:
    """Path under the data root; fail in CI / skip elsewhere when it is missing."""
    root = _data_root()
    path = root.joinpath(*relative)
    if not path.exists():
        msg = f"real CMR data not found at {path} (set CARDIAC_LANDMARKS_DATA)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def data_root() -> Path:
    return require_data()


@pytest.fixture(scope="session")
def sunnybrook_dicom() -> Path:
    return require_data("sunnybrook", "SCD0000101", "dicom")


@pytest.fixture(scope="session")
def acdc_dir() -> Path:
    return require_data("acdc")


@pytest.fixture(scope="session")
def mlperf_dir() -> Path:
    """The mlperf first-pass perfusion series (``<patient>_<stress|rest>_<base|mid>.nii.gz``)."""
    return require_data("perfusion", "mlperf")


@pytest.fixture(scope="module")
def quiet_image_log():
    """Silence the image loader's per-file INFO lines (mlperf headers) for one module, then restore the level.

    Use with ``pytestmark = pytest.mark.usefixtures("quiet_image_log")``.
    """
    logger = logging.getLogger("CardiacLandmarksLib.io.image")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


DATA_FIXTURES = {"data_root", "sunnybrook_dicom", "acdc_dir", "mlperf_dir"}
#: modules whose tests train, run whole studies or drive the Slicer module (seconds to minutes each)
SLOW_MODULES = {"test_sax_training", "test_lax_train", "test_perfusion_cli", "test_slicer_module", "test_slicer_lax",
                "test_slicer_perfusion", "test_confidence", "test_lax_cli", "test_slicer_panel"}



@pytest.fixture
def pyplot_untouched(monkeypatch):
    """The figures of this tool are drawn without pyplot, whose figure registry is process-wide state (matplotlib's
    advice for web servers and embedding applications; the review app and Dask workers draw in threads) and without
    switching the user's matplotlib backend (Slicer's Python). Here pyplot's ``figure`` fails, the backend is
    'svg' while the test runs, and it must still be after it."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    def no_pyplot(*args, **kwargs):
        raise AssertionError("a figure of this tool was made through pyplot")

    monkeypatch.setattr(plt, "figure", no_pyplot)
    try:
        yield
        assert matplotlib.get_backend() == "svg", "a figure of this tool switched the matplotlib backend"
    finally:
        monkeypatch.undo()
        matplotlib.use("Agg")

def pytest_collection_modifyitems(config, items):
    """Apply the ``data`` and ``slow`` markers where they belong (``pytest -m "not data"`` runs anywhere).

    ``data``: the test needs a data fixture, or its module calls :func:`require_data`. ``slow``: the modules in
    :data:`SLOW_MODULES`.
    """
    sources: dict[str, str] = {}
    for item in items:
        path = str(item.path)
        if path not in sources:
            sources[path] = item.path.read_text() if item.path.suffix == ".py" else ""
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())) or "require_data(" in sources[path]:
            item.add_marker(pytest.mark.data)
        if item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def progress_log(caplog, monkeypatch):
    """caplog for the library's lines for a person (``CardiacLandmarksLib.progress``): the CLI's ``main`` stops them
    from propagating to the root logger (it prints them itself), which an earlier test in the process may have run."""
    import logging

    monkeypatch.setattr(logging.getLogger("CardiacLandmarksLib.progress"), "propagate", True)
    return caplog


@contextlib.contextmanager
def held_by_another_process(folder: Path, command: str = "study"):
    """Another Python process holding ``folder`` as a run of ``command`` does (``prepare_output_dir(hold=...)``)
    until the block ends; yields its process (its pid is in the refusal's message). The OS drops the lock when the
    process is killed."""
    import subprocess

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom CardiacLandmarksLib.io.outputs import prepare_output_dir\n"
         "prepare_output_dir(sys.argv[1], hold=sys.argv[2])\nprint('held', flush=True)\ntime.sleep(120)",
         str(folder), command], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
