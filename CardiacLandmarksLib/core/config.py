"""The one place that knows where data and bundled models live.

``CARDIAC_LANDMARKS_DATA`` (default ``../shared/data`` relative to the repository root)
points at the real public CMR sets; nothing from there is ever copied into the project.
``CARDIAC_LANDMARKS_MODELS`` overrides the bundled ``Resources/Models`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """Folder holding the shared CMR data sets (``acdc/``, ``sunnybrook/`` ...).

    Returns the value of ``CARDIAC_LANDMARKS_DATA`` when set, else ``<repo>/../shared/data``.
    The folder may not exist; callers decide whether that is an error.
    """
    env = os.environ.get("CARDIAC_LANDMARKS_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def models_root() -> Path:
    """Folder of the bundled model weights and cards (``Resources/Models``)."""
    env = os.environ.get("CARDIAC_LANDMARKS_MODELS")
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT / "Resources" / "Models"
