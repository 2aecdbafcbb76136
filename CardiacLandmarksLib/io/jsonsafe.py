"""Strict JSON for every file the tool writes.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which strict readers (JavaScript's
``JSON.parse``, ``jq``, most non-Python tools a cohort analyst uses) reject. A figure that cannot be
computed (an SD over one patient, the error of a landmark never found, a volume of a missing
phase) is ``null`` in the files this package writes. Every result, card and manifest writer goes
through :func:`finite_json` / :func:`dumps_strict`; there is no second copy of this rule.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite_json(obj: Any, *, missing_vectors_as_null: bool = False) -> Any:
    """A copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts.

    Args:
        obj: nested dicts, lists, tuples, numpy arrays and scalars, Python numbers, strings, None.
        missing_vectors_as_null: a list whose items are all non-finite numbers (e.g. the
            ``[NaN, NaN, NaN]`` position of a landmark that was not found) becomes ``None``
            instead of ``[None, None, None]``.

    Returns:
        The same structure with non-finite floats (NaN, +-inf) as ``None``, numpy scalars as Python
        ``int`` / ``float`` / ``bool``, numpy arrays and tuples as lists and dict keys as strings.
        Other objects are returned unchanged (``json.dumps``' ``default`` decides about them).
    """
    if isinstance(obj, dict):
        return {str(k): finite_json(v, missing_vectors_as_null=missing_vectors_as_null) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, list | tuple):
        if (missing_vectors_as_null and obj
                and all(isinstance(v, float | np.floating) and not math.isfinite(v) for v in obj)):
            return None
        return [finite_json(v, missing_vectors_as_null=missing_vectors_as_null) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def dumps_strict(obj: Any, *, indent: int | None = 2, default=None, missing_vectors_as_null: bool = False) -> str:
    """``json.dumps`` of :func:`finite_json` ``(obj)`` with ``allow_nan=False`` (no trailing newline).

    Raises:
        TypeError: an object that neither :func:`finite_json` nor ``default`` turns into JSON.
    """
    return json.dumps(finite_json(obj, missing_vectors_as_null=missing_vectors_as_null), indent=indent,
                      default=default, allow_nan=False)
