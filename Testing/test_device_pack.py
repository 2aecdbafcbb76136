"""The compact SAX training pack of ``benchmarks/device_pack.py`` (what a GPU lease trains on, since the data cannot
travel as it is): real ACDC canvases through :func:`compact` and back must give the network the same inputs to the
uint8 step, the stack neighbours from the right canvases, and every label unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from device_pack import compact, expand  # noqa: E402

from CardiacLandmarksLib.datasets.sax import acdc_cases, build_samples  # noqa: E402


@pytest.mark.data
def test_compact_pack_gives_back_the_same_samples(acdc_dir):
    cases = [c for c in acdc_cases(acdc_dir) if c.patient in ("patient001", "patient002")]
    samples = build_samples(cases, True)
    assert len(samples.images) >= 30 and samples.images.max() > 1.0  # canvases normalised to 0-1.5
    packed = compact(samples)
    assert packed["images"].dtype == np.uint8 and not packed["context_extra"]  # every neighbour is a canvas itself
    # the first slice of a stack has itself as its missing neighbour; the others, the slices beside them
    first = packed["context_idx"][0]
    assert 0 in first and set(first) <= {0, 1}
    back = expand(packed)
    assert np.abs(back.images - samples.images).max() <= 1.5 / 255 / 2 + 1e-6
    assert np.abs(back.context - samples.context).max() <= 1.5 / 255 / 2 + 1e-6
    for field in ("masks", "context_masks", "present", "known", "known_classes"):
        assert np.array_equal(getattr(back, field), getattr(samples, field)), field
    assert np.array_equal(back.points, samples.points, equal_nan=True)
    assert back.meta == samples.meta and back.kinds == samples.kinds
    # a neighbour that is no canvas of the set (a resampled one) travels as its own uint8 canvas
    samples.context[3, 1] = samples.context[3, 1] * 0.5
    packed = compact(samples)
    assert list(packed["context_extra"]) == [(3, 1)] and packed["context_idx"][3, 1] == -1
    assert np.abs(expand(packed).context[3, 1] - samples.context[3, 1]).max() <= 1.5 / 255 / 2 + 1e-6


def test_device_check_finds_the_package_of_its_checkout_without_an_install(tmp_path):
    """The device machine runs ``python3 benchmarks/device_check.py`` on a copy of the working tree with nothing
    installed from it (the first call of the thirty-fifth pass failed on every step with ``No module named
    'CardiacLandmarksLib'``). Imitated here: ``python -S`` skips the site packages' ``.pth`` files (so the editable
    install is not seen), and only the folder with torch and numpy is put on the path."""
    import subprocess
    import sysconfig

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"
    probe = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='probe'); "
             "import CardiacLandmarksLib.training.train_sax as t; print(t.__file__)")
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()).resolve().is_relative_to(script.parents[1] / "CardiacLandmarksLib")
