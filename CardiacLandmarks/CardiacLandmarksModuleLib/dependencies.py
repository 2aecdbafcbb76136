"""Python packages the library needs inside Slicer, checked and installed on request only.

Nothing here runs at import time: the panel calls :func:`ensureInstalled` when the user first
presses *Detect* or *Run perfusion report*; it asks for confirmation, then installs PyTorch through
the SlicerPyTorch extension (``PyTorchUtils``, which picks the build matching the GPU driver) and
the other packages with ``slicer.util.pip_install``. The bundled model weights are part of the
extension, so detection itself needs no network.

:data:`REQUIREMENTS` must match the runtime dependencies in ``pyproject.toml`` minus torch and
:data:`CLI_ONLY` (packages only the command line imports: tqdm for its progress bars, distributed for the cohort runner);
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
    "python-gdcm>=3.0.10": "gdcm",  # compressed DICOM (JPEG Lossless, JPEG-LS, JPEG 2000) for pydicom
    "matplotlib>=3.7": "matplotlib",
    "nibabel>=5": "nibabel",
    "slicerio>=1.4": "slicerio",
    "filelock>=3.12": "filelock",  # one run at a time per output folder (the perfusion export); comes with torch
}
#: runtime dependencies of the package that only the command line (``CardiacLandmarksLib.cli``) imports:
#: never installed into Slicer
CLI_ONLY: tuple[str, ...] = ("tqdm", "distributed")  # progress bars; the cohort runner (Dask)
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


def ensureInstalled() -> tuple[bool, str]:
    """Make torch and :data:`REQUIREMENTS` importable inside Slicer, asking the user first.

    Called by the panel before the first detection and the first perfusion report (both need
    torch; the reports need matplotlib). PyTorch comes from the SlicerPyTorch extension (its own
    confirmation dialog), the other packages from ``slicer.util.pip_install`` after an OK/Cancel
    dialog.

    Returns:
        ``(True, "")`` when everything is importable, ``(False, reason)`` when the user declined
        (``reason`` is a status text for the panel).

    Raises:
        DependencyError: the PyTorch extension is missing, or pip could not install a package.
    """
    import slicer
    from slicer.i18n import tr as _

    if not torchInstalled() and not installTorch(askConfirmation=True):
        return False, _("PyTorch is needed for detection and perfusion analysis.")
    missing = missingRequirements()
    if missing:
        if not slicer.util.confirmOkCancelDisplay(
                _("Cardiac Landmarks needs these Python packages: {packages}.\n\n"
                  "Install them now? This needs an internet connection and may take a few minutes.").format(
                    packages=", ".join(missing))):
            return False, _("Missing Python packages: {packages}").format(packages=", ".join(missing))
        with slicer.util.WaitCursor():
            installRequirements(missing)
    return True, ""
