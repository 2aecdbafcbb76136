"""Slicer 5.10 runs Python 3.12: the Slicer module and the library must compile and import there.

Run by ``.ci/run`` with a Python 3.12 venv holding the packages the module installs into Slicer
(``CardiacLandmarksModuleLib.dependencies.REQUIREMENTS``) and vermin, but not torch (a fresh
Slicer has none until the user accepts the install):

1. every ``.py`` of ``CardiacLandmarksLib/`` and ``CardiacLandmarks/`` byte-compiles under 3.12;
2. vermin finds no feature newer than 3.12 in them;
3. every library module imports, or fails only for torch (models, training) or tqdm (cli);
   the modules the Slicer module imports before any install (``CardiacLandmarksModuleLib``
   helpers, ``core.errors``) import without torch.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED_MISSING = {"torch", "tqdm"}


def main() -> int:
    assert sys.version_info[:2] == (3, 12), sys.version
    files = sorted([*(REPO / "CardiacLandmarksLib").rglob("*.py"), *(REPO / "CardiacLandmarks").rglob("*.py")])
    for path in files:
        compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
    print(f"byte-compiled {len(files)} files under Python {sys.version.split()[0]}")
    vermin = subprocess.run([str(Path(sys.executable).with_name("vermin")), "-t=3.12-", "--no-tips", "--violations",
                             "--eval-annotations", "--no-parse-comments", *map(str, files)],
                            capture_output=True, text=True)
    if vermin.returncode != 0:
        print(vermin.stdout, vermin.stderr)
        return 1
    print("vermin: nothing newer than Python 3.12")
    sys.path[:0] = [str(REPO), str(REPO / "CardiacLandmarks")]
    failures, needTorch = [], []
    for path in sorted((REPO / "CardiacLandmarksLib").rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            (needTorch if exc.name in ALLOWED_MISSING else failures).append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 (report every failure)
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    for name in ("CardiacLandmarksModuleLib.names", "CardiacLandmarksLib.core.errors"):
        importlib.import_module(name)
    print(f"imported the library: {len(needTorch)} modules need torch/tqdm (installed on first use)")
    if failures:
        print("\n".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
