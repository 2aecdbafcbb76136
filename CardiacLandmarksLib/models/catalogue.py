"""The model catalogue (``Resources/Models/catalogue.json``) and the one checked, cached loader of bundled models.

Every bundled model has one catalogue entry: ``name`` (file stem), ``task`` (``landmarks``, ``confidence``,
``perfusion_segmentation``, ...), ``view`` (``sax``, ``4ch``, ... or ``null``), ``version``, ``file`` (weights),
``card`` (JSON card beside it, with its Markdown rendering), ``sha256`` of the weights, ``licence``, the input grid
(``input_mm``, ``input_px``) and measured ``cpu_ms`` / ``gpu_ms`` per image (``null`` when not measured). The
catalogue, the card and the weights must agree: :func:`load_bundled` checks the weights' SHA256 against both
before any network is built (pattern of SlicerMONAIAuto3DSeg's model list, and of its per-model cards).

The front ends never name a weights file: they ask :func:`model_for` (task, view) and call the task's loader,
which goes through :func:`load_bundled`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from CardiacLandmarksLib.core.config import models_root
from CardiacLandmarksLib.core.errors import ModelIntegrityError
from CardiacLandmarksLib.io.atomic import sha256_file

logger = logging.getLogger(__name__)

CATALOGUE_FILE = "catalogue.json"
_CACHE: dict[tuple, tuple[object, dict, str]] = {}


@dataclass(frozen=True)
class CatalogueEntry:
    """One bundled model (see the module docstring for the fields)."""

    name: str
    task: str
    view: str | None
    version: str
    file: str
    card: str
    sha256: str
    licence: str
    input_mm: float | None
    input_px: int | None
    cpu_ms: float | None = None
    gpu_ms: float | None = None
    #: sequences this model is chosen for (``"lge"``, ``"perfusion"``, ...); None: every sequence no other model of
    #: the same task and view claims (the general model)
    sequences: list[str] | None = None


def catalogue(models_dir: Path | None = None) -> dict[str, CatalogueEntry]:
    """All catalogue entries by name.

    Raises:
        ModelIntegrityError: the catalogue is missing or not valid JSON.
    """
    path = Path(models_dir or models_root()) / CATALOGUE_FILE
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["models"]
    except FileNotFoundError as exc:
        raise ModelIntegrityError(f"model catalogue {path} not found (set CARDIAC_LANDMARKS_MODELS to the "
                                  f"folder of the bundled models)") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(f"model catalogue {path} is not valid: {exc}") from exc
    return {row["name"]: CatalogueEntry(**row) for row in rows}


def model_for(task: str, view: str | None = None, models_dir: Path | None = None, sequence: str | None = None) -> str:
    """Name of the bundled model for ``task`` (and ``view``, and ``sequence``).

    A model whose catalogue entry lists ``sequence`` among its ``sequences`` is chosen for that sequence (Xue et al.,
    Radiology: AI 2021, ran a model per sequence); otherwise the general one (an entry without ``sequences``).

    Raises:
        ModelIntegrityError: no bundled model for that task and view.
    """
    entries = [e for e in catalogue(models_dir).values() if e.task == task and (view is None or e.view == view)]
    if not entries:
        have = sorted({f"{e.task}/{e.view}" for e in catalogue(models_dir).values()})
        raise ModelIntegrityError(f"no bundled model for task {task!r}, view {view!r} (bundled: {', '.join(have)})")
    if sequence:
        for e in entries:
            if e.sequences and sequence in e.sequences:
                return e.name
    general = [e for e in entries if not e.sequences]
    return (general or entries)[0].name


def read_card(name: str, models_dir: Path | None = None) -> dict:
    """The JSON model card of a bundled model (or of ``<models_dir>/<name>.json`` outside the catalogue).

    Raises:
        ModelIntegrityError: card missing or not valid JSON.
    """
    path = Path(models_dir or models_root()) / f"{name}.json"
    if not path.exists():
        raise ModelIntegrityError(f"model card {path} not found; the bundled model {name!r} is missing "
                                  f"(retrain with 'cardiac-landmarks train' or set CARDIAC_LANDMARKS_MODELS)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelIntegrityError(f"model card {path} is not valid JSON: {exc}") from exc


def checked_files(name: str, models_dir: Path | None = None) -> tuple[Path, dict, str]:
    """``(weights path, card, sha256)`` of a bundled model after checking card, catalogue and file agree.

    A models folder without a catalogue (a training run's output folder) is checked against the card only.

    Raises:
        ModelIntegrityError: weights or card missing, or a SHA256 that differs from the card or the catalogue.
    """
    mdir = Path(models_dir or models_root())
    entry = None
    if (mdir / CATALOGUE_FILE).exists():
        entry = catalogue(mdir).get(name)
    weights = mdir / (entry.file if entry else f"{name}.pt")
    card = read_card(Path(entry.card).stem if entry else name, mdir)
    if not weights.is_file():
        raise ModelIntegrityError(f"model weights {weights} not found")
    digest = sha256_file(weights)
    for what, expected in (("model card", card.get("sha256")), ("catalogue", entry.sha256 if entry else digest)):
        if expected != digest:
            raise ModelIntegrityError(f"SHA256 of {weights.name} ({digest[:12]}...) does not match its {what} "
                                      f"({str(expected)[:12]}...): the file is corrupt or was replaced; after "
                                      f"retraining run 'cardiac-landmarks models --refresh'")
    return weights, card, digest


def load_bundled(name: str, device: str, build: Callable[[dict, dict], object],
                 models_dir: Path | None = None) -> tuple[object, dict, str]:
    """Load a bundled model once per process: check it (:func:`checked_files`), then ``build(card, checkpoint)``.

    Args:
        name: model name (catalogue entry / file stem).
        device: ``"cpu"`` or ``"cuda[:n]"`` (already resolved); part of the cache key.
        build: makes the ready-to-run object from the card and the ``torch.load``-ed checkpoint dict.
        models_dir: another models folder (a training run's output); default the bundled one.

    Returns:
        ``(built object, card, sha256)``; the same object for the same name, device, file and mtime.

    Raises:
        ModelIntegrityError: see :func:`checked_files`.
    """
    import torch

    mdir = Path(models_dir or models_root())
    key = (name, device, str(mdir)) + tuple(p.stat().st_mtime_ns if p.exists() else 0
                                            for p in (mdir / f"{name}.pt", mdir / f"{name}.json"))
    if key in _CACHE:
        return _CACHE[key]
    weights, card, digest = checked_files(name, mdir)
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    obj = build(card, checkpoint)
    logger.info("loaded %s %s on %s", name, card.get("version"), device)
    _CACHE[key] = (obj, card, digest)
    return _CACHE[key]


def lax_model_name(view: str) -> str:
    """The model name of a long-axis view's landmark model: ``"lax4ch_unet"`` etc. (what ``train --view`` writes and
    :func:`refresh` adds)."""
    return f"lax{view}_unet"


#: long-axis landmark models that ``train --view 2ch|3ch|4ch`` writes: ``refresh`` adds one copied into the models
#: folder that the catalogue does not list yet
_LAX_MODEL_NAMES = {lax_model_name(view): view for view in ("2ch", "3ch", "4ch")}


def _new_lax_entry(mdir: Path, name: str, view: str) -> CatalogueEntry:
    """The catalogue entry of a long-axis landmark model copied into ``mdir`` (weights + card of one training run)."""
    card = read_card(name, mdir)
    if card.get("view") != view:
        raise ModelIntegrityError(f"{name}.json is the card of a {card.get('view')!r} model, not of a {view.upper()} "
                                  "one; copy the .pt and .json of one training run together")
    grid = card.get("input") or {}
    return CatalogueEntry(name=name, task="landmarks", view=view, version=str(card.get("version", "?")),
                          file=f"{name}.pt", card=f"{name}.json", sha256="", licence="",
                          input_mm=grid.get("canvas_mm"), input_px=grid.get("canvas_px"))


def refresh(models_dir: Path | None = None) -> list[CatalogueEntry]:
    """Rewrite the catalogue's ``version``, ``sha256`` and (where the card states it) ``licence`` from each model's
    card and weights (after a retrain), and add a long-axis landmark model (``lax2ch_unet``, ``lax3ch_unet``,
    ``lax4ch_unet``: what ``train --view 2ch|3ch|4ch`` writes) copied in beside them, so that ``detect`` and
    ``study`` use it for its view (there is no bundled 2CH or 3CH model; the README and ``detect`` tell a site to
    train one).

    A listed model whose weights and card are both gone (removed by the user) is dropped from the catalogue.

    Raises:
        ModelIntegrityError: a weights file whose SHA256 differs from its own card, or one of the two files
            missing; a new long-axis model's card of another view.
    """
    from CardiacLandmarksLib.io.atomic import atomic_write_text

    mdir = Path(models_dir or models_root())
    listed = catalogue(mdir)
    added = [_new_lax_entry(mdir, name, view) for name, view in _LAX_MODEL_NAMES.items()
             if name not in listed and (mdir / f"{name}.pt").is_file() and (mdir / f"{name}.json").is_file()]
    entries = []
    for e in [*listed.values(), *added]:
        if not (mdir / e.file).exists() and not (mdir / e.card).exists():
            continue  # both files removed by the user: the catalogue no longer lists the model (cmd_models says so)
        if not (mdir / e.file).exists():
            raise ModelIntegrityError(f"{e.file} not found beside its card {e.card}; copy the .pt and .json of one "
                                      "training run together (or remove both to drop the model)")
        card = read_card(Path(e.card).stem, mdir)
        digest = sha256_file(mdir / e.file)
        if card.get("sha256") != digest:
            raise ModelIntegrityError(f"{e.file}: SHA256 {digest[:12]}... differs from its card; copy the .pt and "
                                      f".json of one training run together")
        # a card written by `train` states the terms of the data it was trained on (a site's own stacks are not
        # ACDC's); the bundled cards do not, and their entries keep the catalogue's words
        entries.append(CatalogueEntry(**{**asdict(e), "version": str(card.get("version", e.version)), "sha256": digest,
                                         "licence": str(card.get("licence") or e.licence or "not stated")}))
    atomic_write_text(mdir / CATALOGUE_FILE,
                      json.dumps({"models": [asdict(e) for e in entries]}, indent=2) + "\n")
    return entries
