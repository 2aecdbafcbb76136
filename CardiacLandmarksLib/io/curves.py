"""Time curves read from files: the arterial input function (AIF) of quantitative perfusion."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from CardiacLandmarksLib.core.errors import InputNotFoundError, PerfusionInputError


def read_curve(path: str | Path) -> np.ndarray:
    """A 1-D curve from ``.txt``/``.csv`` (numbers separated by commas/whitespace), ``.npy``, ``.mat``
    (variable ``aif`` or the only numeric variable) or any image file (all voxels in order).

    Raises:
        InputNotFoundError, PerfusionInputError (no numbers / not 1-D).
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"curve file not found: {p}")
    suf = p.suffix.lower()
    if suf in (".txt", ".csv", ".tsv"):
        text = p.read_text(encoding="utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a byte-order mark
        vals = [float(x) for x in re.split(r"[,;\s]+", text.strip()) if x]
        arr = np.asarray(vals, float)
    elif suf == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif suf == ".mat":
        from scipy.io import loadmat

        m = {k: v for k, v in loadmat(p).items() if not k.startswith("__")}
        key = "aif" if "aif" in m else next((k for k, v in m.items() if np.asarray(v).size > 4), None)
        if key is None:
            raise PerfusionInputError(f"{p.name}: no AIF curve found in the .mat file")
        arr = np.asarray(m[key], float)
    else:  # an image file holding one row (QPerf's aif.hdr): the package's reader, which keeps ITK's
        # "Analyze is deprecated" off the console and names a damaged file
        from CardiacLandmarksLib.io.image import load_image

        arr = load_image(p, time_axis="none").pixels
    arr = np.asarray(arr, float)
    if arr.size < 5 or arr.squeeze().ndim != 1:
        raise PerfusionInputError(f"{p.name}: expected a 1-D curve, got shape {arr.shape}")
    return arr.ravel()
