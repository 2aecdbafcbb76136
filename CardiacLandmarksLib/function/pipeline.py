"""LV and RV function from a short-axis cine, or from two short-axis volumes at ED and ES.

:func:`analyse_function` is the one analysis API that the CLI (``cardiac-landmarks function``),
the Slicer module and the batch runner call:

1. load the input(s) (a cine: DICOM folder or 4-D file; or two 3-D volumes at ED and ES) and check
   them before any long work (named errors from :mod:`CardiacLandmarksLib.errors`);
2. segment RV cavity, LV myocardium and LV cavity on every slice and phase with the bundled SAX
   U-Net's segmentation head (:mod:`.segmentation`), then keep each ventricle's largest 3-D
   connected component (chosen on the model's validation patients outside the ACDC test split:
   it raised the 3-D Dice and cut the 95 % Hausdorff distance there, see the function note);
3. ED / ES: a cine's phases of largest / smallest LV cavity volume (or the given override);
4. measurements by slice summation (:mod:`.measurements`), each with status and flags.

The :class:`FunctionResult` keeps the labels ``[t, k, j, i]`` of each input on its own grid
(``labels`` value 1 = RV cavity, 2 = LV myocardium, 3 = LV cavity), so a front end can show them,
let the user edit them and call :func:`recompute` (numbers only, no network).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import CardiacLandmarksLib.function.measurements as fm
from CardiacLandmarksLib.core.errors import InvalidImageError, WrongViewError
from CardiacLandmarksLib.core.series import CMRSeries
from CardiacLandmarksLib.function.segmentation import (
    UNCERTAIN_SHARE_LIMIT,
    clean_labels,
    drop_unenclosed_cavity,
    segment_series,
    uncertain_share,
)
from CardiacLandmarksLib.io.checks import (
    check_completeness,
    check_image_content,
    check_spacing,
    placeholder_spacing_warning,
)
from CardiacLandmarksLib.io.load import load_series

logger = logging.getLogger(__name__)

#: sequences the model was validated on for function (cine SAX); others get ``model_not_validated``
VALIDATED_SEQUENCES = ("cine", "unknown")


@dataclass
class FunctionOptions:
    """Options of :func:`analyse_function`.

    Attributes:
        ed_phase, es_phase: phase index overrides for a cine (0-based), None = automatic.
        height_cm, weight_kg: for body-surface-area indexing (both or neither).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        tta: mirror test-time augmentation.
        clean: largest-connected-component clean-up (default on).
        basal_rule: drop the LV cavity on slices where less than half of its boundary touches
            myocardium (:func:`.segmentation.drop_unenclosed_cavity`; default off: neutral on the
            ACDC validation patients, see the function note).
        model_name: bundled model name (default :func:`function_model_name`: ``sax_unet_function``).
        models_dir: folder of the bundled models (default the project's).
        allow_incomplete: measure a DICOM cine whose grid misses slice positions or phases (every value is then
            ``review``, flagged ``slices_missing`` / ``phases_missing``); default: IncompleteSeriesError.
    """

    ed_phase: int | None = None
    es_phase: int | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    device: str = "auto"
    tta: bool = True
    clean: bool = True
    basal_rule: bool = False
    model_name: str | None = None
    models_dir: Path | None = None
    allow_incomplete: bool = False


@dataclass
class FunctionResult:
    """Everything :func:`analyse_function` computed.

    Attributes:
        series: the input series: one cine, or ``[ed, es]``.
        names: output file stem per input.
        labels: per input, uint8 ``[t, k, j, i]`` on that input's grid.
        mode: ``"cine"`` or ``"ed-es"``.
        ed_phase, es_phase: phase indices (cine) — for ``"ed-es"`` both 0 of their own volume.
        values: ``{"LV": {name: Value}, "RV": {name: Value}}``.
        curve: cine only: ``{structure: [t] ml}`` volumes over the cycle, else None.
        slice_areas: ``{"ED": {structure: [k] mm^2}, "ES": {...}}``.
        bsa_m2: Mosteller body-surface area or None.
        model: ``{"name", "version", "sha256"}`` of the segmentation model.
        flags: input-level flags (e.g. ``model_not_validated``, ``phase_override``, ``edited``).
        options: the options used.
        confidence: per input, float16 ``[t, k, j, i]`` probability of the chosen class (None after an edit).
        uncertainty: ``{"ED": {structure: share}, "ES": {...}}`` share of each structure's pixels with a
            class probability below 0.75 (see :data:`.segmentation.UNCERTAIN_SHARE_LIMIT`).
    """

    series: list[CMRSeries]
    names: list[str]
    labels: list[np.ndarray]
    mode: str
    ed_phase: int
    es_phase: int
    values: dict[str, dict[str, fm.Value]]
    curve: dict[str, np.ndarray] | None
    slice_areas: dict[str, dict[str, np.ndarray]]
    bsa_m2: float | None
    model: dict
    flags: list[str] = field(default_factory=list)
    options: FunctionOptions = field(default_factory=FunctionOptions)
    confidence: list[np.ndarray] | None = None
    uncertainty: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """For a console: the input, the phases, the model and the values as ``cardiac-landmarks function`` prints
        them (:func:`.measurements.summary_lines`: a value that is not ok carries its status and reason), not the
        label and confidence arrays."""
        inputs = " + ".join(repr(n) for n in self.names)
        phases = (f"ED phase {self.ed_phase}, ES phase {self.es_phase} of {self.series[0].n_phases}"
                  if self.mode == "cine" else "ED and ES volumes")
        model = " ".join(str(self.model.get(k)) for k in ("name", "version") if self.model.get(k))
        lines = fm.summary_lines(self.values) + ([f"  flags: {', '.join(self.flags)}"] if self.flags else [])
        return f"FunctionResult({self.mode} {inputs}, {phases}, {model}\n" + "".join(f"  {x}\n" for x in lines) + ")"

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(x) for x in self.series[0].spacing)

    def ed_labels(self) -> np.ndarray:
        """Labels ``[k, j, i]`` at ED."""
        return self.labels[0][self.ed_phase]

    def es_labels(self) -> np.ndarray:
        """Labels ``[k, j, i]`` at ES."""
        return self.labels[-1][self.es_phase] if self.mode == "cine" else self.labels[1][0]

    def ed_image(self) -> np.ndarray:
        """The ED image ``[k, j, i]`` (first input, phase :attr:`ed_phase`)."""
        return self.series[0].pixels[self.ed_phase]

    def es_image(self) -> np.ndarray:
        """The ES image ``[k, j, i]`` (the cine's phase :attr:`es_phase`, or the second volume)."""
        return self.series[0].pixels[self.es_phase] if self.mode == "cine" else self.series[1].pixels[0]

    def write(self, outdir: str | Path, if_exists: str = "backup") -> list[Path]:
        """Write every output file into ``outdir`` (see :mod:`.report`); returns the paths written."""
        from CardiacLandmarksLib.function.report import write_outputs

        return write_outputs(self, outdir, if_exists=if_exists)


def _stem(series: CMRSeries, fallback: str) -> str:
    src = Path(str(series.source or "")) if series.source else None
    if src is None or not src.name:
        return fallback
    name = src.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _as_series(x) -> CMRSeries:
    return x if isinstance(x, CMRSeries) else load_series(x)


def check_inputs(series: list[CMRSeries], allow_incomplete: bool = False) -> list[str]:
    """Check inputs before segmentation; returns input-level flags.

    A DICOM cine whose grid misses slice positions (a slice left out of the stack: every volume lacks its part) or
    phases (:func:`CardiacLandmarksLib.io.checks.check_completeness`) is refused, or with ``allow_incomplete``
    measured with the flag ``slices_missing`` / ``phases_missing`` (logged as a warning).

    Raises:
        IncompleteSeriesError: slice positions or phases missing and not ``allow_incomplete``.
        WrongViewError: a series known to be a long-axis view.
        FunctionInputError: a single 3-D volume given as a cine; ED and ES on different grids, holding one image, or
            with more than one phase; fewer than 2 slices.
        InvalidImageError: NaN/inf pixels; and the input checks every analysis runs
            (:func:`CardiacLandmarksLib.io.checks.check_spacing`, :func:`~CardiacLandmarksLib.io.checks.check_image_content`):
            ImplausibleSpacingError (a pixel size no cardiac MR has: volumes and mass would be off by its factor
            cubed), LabelMaskError, ConstantImageError.
    """
    flags: list[str] = []
    for s in series:
        check_spacing(s)
        check_image_content(s)
        if s.view not in ("sax", "unknown"):
            raise WrongViewError(f"{s.source or 'input'} is a {s.view} view: function needs a short-axis (SAX) stack")
        if s.n_slices < 2:
            raise fm.FunctionInputError(f"{s.source or 'input'} has {s.n_slices} slice: volumes need a short-axis stack")
        if not np.all(np.isfinite(s.pixels)):
            raise InvalidImageError(f"{s.source or 'input'} contains NaN or infinite pixels")
        if s.sequence not in VALIDATED_SEQUENCES:
            flags.append("model_not_validated")
        if placeholder_spacing_warning(s):
            flags.append("placeholder_spacing")
        if (s.metadata or {}).get("phases_cut"):
            flags.append("phases_cut")
        for text in check_completeness(s, allow_incomplete):
            logger.warning("%s", text)
            grid = (s.metadata or {}).get("completeness", {})
            if grid.get("missing_slice_positions_mm"):
                flags.append("slices_missing")
            if grid.get("phases_missing", not grid.get("missing_slice_positions_mm")):
                flags.append("phases_missing")
    if len(series) == 1:
        if series[0].n_phases < 2:
            raise fm.FunctionInputError(f"{series[0].source or 'input'} is a single 3-D volume, not a cine: give "
                                        f"it with another as --ed ED_FILE --es ES_FILE")
    else:
        ed, es = series
        if ed.n_phases != 1 or es.n_phases != 1:
            raise fm.FunctionInputError(f"--ed and --es must be 3-D volumes; got {ed.n_phases} and {es.n_phases} phases")
        if ed.pixels.shape != es.pixels.shape or not np.allclose(ed.spacing, es.spacing, atol=1e-3):
            raise fm.FunctionInputError(f"ED and ES volumes are on different grids: shape {ed.pixels.shape[1:]} "
                                        f"vs {es.pixels.shape[1:]}, spacing {ed.spacing} vs {es.spacing}")
        if np.array_equal(ed.pixels, es.pixels):
            raise fm.FunctionInputError(f"the ED and ES volumes hold the same image ({ed.source or 'ED'}, "
                                        f"{es.source or 'ES'}): give the two phases of the cine")
    return sorted(set(flags))


_SHORT = {1: "rv", 2: "myo", 3: "lv"}


def segmentation_flags(labels_kji: np.ndarray, confidence_kji: np.ndarray | None) -> tuple[list[str], dict]:
    """``(flags, shares)`` of one volume: ``<rv|myo|lv>_segmentation_uncertain`` where the share of uncertain
    pixels exceeds :data:`.segmentation.UNCERTAIN_SHARE_LIMIT`; ``shares`` ``{structure: share}``."""
    if confidence_kji is None:
        return [], {}
    flags, shares = [], {}
    for name, v in fm.STRUCTURES.items():
        share = uncertain_share(labels_kji, confidence_kji, v)
        shares[name] = None if not np.isfinite(share) else round(share, 4)
        if np.isfinite(share) and share > UNCERTAIN_SHARE_LIMIT[v]:
            flags.append(f"{_SHORT[v]}_segmentation_uncertain")
    return flags, shares


def measure(labels: list[np.ndarray], mode: str, spacing, ed_phase: int | None = None, es_phase: int | None = None,
            bsa: float | None = None, flags: list[str] | None = None,
            confidence: list[np.ndarray] | None = None) -> tuple[int, int, dict, dict | None, dict, dict]:
    """Numbers from label arrays (no network): ``(ed, es, values, curve, slice_areas, uncertainty)``.

    ``labels``: one ``[t, k, j, i]`` for a cine or two ``[1, k, j, i]`` for ED/ES; ``confidence``: the
    same shapes (class probabilities) or None. Used by :func:`analyse_function` and :func:`recompute`.
    """
    flags = list(flags or [])
    curve = None
    if mode == "cine":
        curve = fm.volume_curve_ml(labels[0], spacing)
        ed, es = fm.choose_ed_es(curve["LV cavity"], ed_phase, es_phase)
        ed_at_cut = "phases_cut" in flags and ed_phase is None and ed >= len(curve["LV cavity"]) - 2
        ed_lab, es_lab = labels[0][ed], labels[0][es]
        ed_conf, es_conf = (confidence[0][ed], confidence[0][es]) if confidence is not None else (None, None)
    else:
        ed, es, ed_at_cut = 0, 0, False
        ed_lab, es_lab = labels[0][0], labels[1][0]
        ed_conf, es_conf = (confidence[0][0], confidence[1][0]) if confidence is not None else (None, None)
    extra = [f for f in flags if f not in fm.INFO_FLAGS]
    ed_flags, ed_shares = segmentation_flags(ed_lab, ed_conf)
    if ed_at_cut:  # the values from ED: the true ED may be a phase the stack left out
        ed_flags.append("ed_at_cut")
    es_flags, es_shares = segmentation_flags(es_lab, es_conf)
    values = {v: fm.ventricle_values(ed_lab, es_lab, spacing, v, ed, es, bsa, extra, ed_flags, es_flags)
              for v in ("LV", "RV")}
    areas = {"ED": fm.slice_areas_mm2(ed_lab, spacing), "ES": fm.slice_areas_mm2(es_lab, spacing)}
    return ed, es, values, curve, areas, {"ED": ed_shares, "ES": es_shares}


def function_model_name(models_dir: Path | None = None) -> str:
    """The bundled SAX U-Net whose segmentation head measures function: the catalogue's ``function_segmentation``
    model (``sax_unet_function``, the cine-only SAX v1.3.1), else the general SAX landmark model.

    v1.3.1 was kept for this task because, on the SAX models' choice patients (ACDC patient004, 034, 059, 068, 088;
    none trained on), it measured LV EF closer to the experts than the later, more robust landmark models: mean
    |difference| 5.0 points, against 8.4 (v1.5.0) and 10.9 (v1.4.0); LV mass 7.4 g against 9.9 and 13.8. Its
    uncertain-pixel limits (:mod:`.segmentation`) were calibrated on it.
    """
    from CardiacLandmarksLib.core.errors import ModelIntegrityError
    from CardiacLandmarksLib.models.catalogue import model_for

    try:
        return model_for("function_segmentation", "sax", models_dir)
    except ModelIntegrityError:
        return model_for("landmarks", "sax", models_dir)


def analyse_function(inputs, options: FunctionOptions | None = None,
                     progress: Callable[[float, str], None] | None = None, model=None) -> FunctionResult:
    """Segment and measure LV/RV function.

    Args:
        inputs: a cine (path or :class:`CMRSeries` with ``t >= 2``), or a tuple/list ``(ed, es)``
            of two 3-D volumes (paths or series, same grid).
        options: :class:`FunctionOptions` (default automatic ED/ES, clean-up on, no indexing).
        progress: optional callback ``(fraction 0..1, message)``.
        model: an already loaded :class:`~CardiacLandmarksLib.inference.LoadedModel` (default
            the bundled SAX model, loaded with ``options.device``).

    Returns:
        :class:`FunctionResult` (``.write(outdir)`` writes the files).

    Raises:
        InputNotFoundError, NoDicomError, ... (loading); WrongViewError; FunctionInputError
        (see :func:`check_inputs`, bad height/weight, phase out of range); ModelIntegrityError;
        SegmentationUnavailableError.
    """
    opts = options or FunctionOptions()
    bsa = fm.bsa_mosteller(opts.height_cm, opts.weight_kg)
    if isinstance(inputs, (tuple, list)):
        if len(inputs) != 2:
            raise fm.FunctionInputError(f"give one cine or two volumes (ED, ES), not {len(inputs)} inputs")
        series = [_as_series(x) for x in inputs]
        mode = "ed-es"
        if opts.ed_phase not in (None, 0) or opts.es_phase not in (None, 0):
            raise fm.FunctionInputError("--ed-phase/--es-phase apply to a cine, not to two volumes")
    else:
        series = [_as_series(inputs)]
        mode = "cine"
    flags = check_inputs(series, opts.allow_incomplete)
    if mode == "cine":
        fm.choose_ed_es(np.zeros(series[0].n_phases), opts.ed_phase, opts.es_phase)  # range check, before the network
        if opts.ed_phase is not None or opts.es_phase is not None:
            flags.append("phase_override")
    if model is None:
        from CardiacLandmarksLib.models.loader import load_model

        name = opts.model_name or (None if opts.models_dir else function_model_name())
        model = load_model("sax", device=opts.device, models_dir=opts.models_dir, name=name)
    labels, confidence = [], []
    n_in = len(series)
    for n, s in enumerate(series):
        def _p(f, msg, n=n):
            if progress:
                progress((n + f) / n_in * 0.95, msg)
        lab, conf = segment_series(s, model, tta=opts.tta, progress=_p, return_confidence=True)
        if opts.clean:
            lab = np.stack([clean_labels(v) for v in lab])
        if opts.basal_rule:
            lab = np.stack([drop_unenclosed_cavity(v) for v in lab])
        labels.append(lab)
        confidence.append(conf)
    ed, es, values, curve, areas, unc = measure(labels, mode, series[0].spacing, opts.ed_phase, opts.es_phase, bsa,
                                                flags, confidence)
    names = [_stem(s, f"input{n}") for n, s in enumerate(series)]
    if len(names) == 2 and names[0] == names[1]:
        names = [names[0] + "_ED", names[1] + "_ES"]
    if progress:
        progress(1.0, "done")
    logger.info("function: LV EF %s, RV EF %s (ED %d, ES %d)", values["LV"]["EF_pct"].value,
                values["RV"]["EF_pct"].value, ed, es)
    return FunctionResult(series, names, labels, mode, ed, es, values, curve, areas, bsa, model.describe(),
                          sorted(set(flags)), opts, confidence, unc)


def recompute(result: FunctionResult, labels: list[np.ndarray] | None = None) -> FunctionResult:
    """Recompute every number of ``result`` from (edited) labels, without the network.

    Args:
        result: a previous result (its series, mode, options and BSA are kept).
        labels: new labels, same shapes as ``result.labels`` (default: the result's own). When they
            differ from the current ones the result gets the information flag ``edited`` and the
            model's confidence (and its ``*_segmentation_uncertain`` flags) is dropped: the user
            has reviewed the segmentation.

    Returns:
        The same object, updated (ED/ES re-chosen for a cine unless overridden).

    Raises:
        FunctionInputError: labels of another shape.
    """
    if labels is not None:
        if len(labels) != len(result.labels) or any(np.shape(a) != np.shape(b) for a, b in zip(labels, result.labels)):
            raise fm.FunctionInputError("edited labels must have the shapes of the result's labels "
                                        f"{[np.shape(b) for b in result.labels]}")
        new = [np.asarray(a, np.uint8) for a in labels]
        if any(not np.array_equal(a, b) for a, b in zip(new, result.labels)):
            result.confidence = None
            result.flags = sorted(set(result.flags) | {"edited"})
        result.labels = new
    o = result.options
    ed, es, values, curve, areas, unc = measure(result.labels, result.mode, result.spacing, o.ed_phase, o.es_phase,
                                                result.bsa_m2, result.flags, result.confidence)
    result.ed_phase, result.es_phase, result.values, result.curve, result.slice_areas = ed, es, values, curve, areas
    result.uncertainty = unc
    return result


__all__ = ["FunctionOptions", "FunctionResult", "analyse_function", "recompute", "measure", "check_inputs"]
