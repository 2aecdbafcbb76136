"""Python packages the library needs inside Slicer, checked and installed on request only.

Nothing here runs at import time: the module widget calls :func:`missingRequirements` and
:func:`torchInstalled` when the user first presses *Detect*, asks for confirmation, then
installs PyTorch through the SlicerPyTorch extension (``PyTorchUtils``, which picks the build
matching the GPU driver) and the other packages with ``slicer.util.pip_install``. The bundled
model weights are part of the extension, so detection itself needs no network.

:data:`REQUIREMENTS` must match the runtime dependencies in ``pyproject.toml`` (minus torch);
``Testing/test_slicer_module.py`` checks that.
"""

from __future__ import annotations

import importlib.util
import logging

from CardiacLandmarksLib.core.errors import CardiacLandmarksError

logger = logging.getLogger(__name__)

#: pip requirement -> import name, for every runtime dependency except torch
REQUIREMENTS: dict[str, str] = {
    "numpy>=1.24": "numpy",
    "scipy>=1.10": "scipy",
    "SimpleITK>=2.3": "SimpleITK",
    "pydicom>=2.4": "pydicom",
    "tqdm>=4.60": "tqdm",
    "matplotlib>=3.7": "matplotlib",
}
#: torch version accepted inside Slicer (installed by SlicerPyTorch, not pinned like the dev venv)
TORCH_REQUIREMENT = ">=2.0"


class DependencyError(CardiacLandmarksError):
    """A required package is missing and could not be installed (or the user declined)."""


def missingRequirements() -> list[str]:
    """Requirements (pip syntax) whose module cannot be imported in this Python."""
    return [req for req, module in REQUIREMENTS.items() if importlib.util.find_spec(module) is None]


def torchInstalled() -> bool:
    """True when ``torch`` can be imported."""
    return importlib.util.find_spec("torch") is not None


def installTorch(askConfirmation: bool = True) -> bool:
    """Install PyTorch through the SlicerPyTorch extension's ``PyTorchUtils`` module.

    Returns:
        True when torch is importable afterwards, False when the user declined.

    Raises:
        DependencyError: the PyTorch extension is not installed.
    """
    try:
        import PyTorchUtils  # provided by the "PyTorch" extension (EXTENSION_DEPENDS)
    except ImportError as exc:
        raise DependencyError(
            "PyTorch is not installed and the 'PyTorch' extension (SlicerPyTorch) is missing: install it from "
            "the Extensions Manager, restart Slicer and try again") from exc
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation,
                                                         torchVersionRequirement=TORCH_REQUIREMENT)
    if torch is None:
        logger.info("PyTorch installation declined")
        return False
    return True


def installRequirements(requirements: list[str]) -> None:
    """Install ``requirements`` with ``slicer.util.pip_install`` (network needed)."""
    if not requirements:
        return
    import slicer

    logger.info("installing %s", ", ".join(requirements))
    slicer.util.pip_install(requirements)
    importlib.invalidate_caches()
    still = [r for r in requirements if r in missingRequirements()]
    if still:
        raise DependencyError(f"could not install {', '.join(still)}; see the Python console for pip's output")
